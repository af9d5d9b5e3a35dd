# Weir's image: the `weir` binary on Debian, for `weir session` and
# `weir worker` (see deploy/kubernetes/). The build stage runs the
# README's build steps (scripts/quickstart.sh).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
ENV CARGO_TARGET_DIR=/target
RUN bash -c 'source scripts/env.sh && install_build_deps' \
 && cargo build -p weir-cli \
 && cp /target/debug/weir /usr/local/bin/weir

FROM debian:bookworm-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /var/lib/weir weir
COPY --from=build /usr/local/bin/weir /usr/local/bin/weir
USER weir
WORKDIR /var/lib/weir
EXPOSE 8081 6123
ENTRYPOINT ["/usr/local/bin/weir"]
CMD ["session", "--data-dir", "/var/lib/weir"]
