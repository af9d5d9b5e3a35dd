#!/usr/bin/env node
// `weir-js build job.js -o job.wasm`: a JavaScript (or TypeScript) job as a
// Weir component. The job and the SDK are bundled into one ES module
// (rolldown), then compiled with ComponentizeJS (StarlingMonkey). Ahead-of-time
// compilation is left off: it downloads its compiler at build time.

import { mkdtempSync, rmSync, statSync, writeFileSync, existsSync, realpathSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve, basename, extname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const sdk = resolve(here, "..");

function usage(code) {
  const text = `usage: weir-js build JOB.js [-o JOB.wasm]
       weir-js wit            print the path of the WIT contract`;
  (code ? console.error : console.log)(text);
  process.exit(code);
}

export function witPath() {
  return realpathSync(join(sdk, "weir.wit"));
}

export async function build(jobFile, output, { quiet = false } = {}) {
  const job = resolve(jobFile);
  if (!existsSync(job)) {
    throw new Error(`${job} does not exist; give the path of the job's .js or .ts file`);
  }
  const started = Date.now();
  const tmp = mkdtempSync(join(tmpdir(), "weir-js-"));
  try {
    const entry = join(tmp, "entry.js");
    writeFileSync(
      entry,
      `import ${JSON.stringify(job)};\nexport { job } from ${JSON.stringify(join(sdk, "src", "runtime.js"))};\n`,
    );
    const { rolldown } = await import("rolldown");
    const bundle = await rolldown({
      input: entry,
      external: [/^weir:/, /^wasi:/],
      // The job's `@weir/sdk` is this SDK, whatever a tsconfig maps it to
      // for type checking.
      plugins: [
        {
          name: "weir-sdk",
          resolveId: (id) => (id === "@weir/sdk" ? join(sdk, "src", "index.js") : null),
        },
      ],
      logLevel: quiet ? "silent" : "warn",
    });
    const bundled = join(tmp, "job.bundle.js");
    await bundle.write({ file: bundled, format: "esm" });
    await bundle.close();
    const { componentize } = await import("@bytecodealliance/componentize-js");
    const { component } = await componentize({
      sourcePath: bundled,
      witPath: witPath(),
      worldName: "job-world",
      // Jobs get no HTTP; the host does the I/O.
      disableFeatures: ["http", "fetch-event"],
    });
    writeFileSync(output, component);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  if (!quiet) {
    const mib = statSync(output).size / (1 << 20);
    console.log(`built ${resolve(output)} (${mib.toFixed(1)} MiB) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
}

async function main(argv) {
  const [command, ...rest] = argv;
  if (command === "wit") {
    console.log(witPath());
    return;
  }
  if (command !== "build") usage(command ? 2 : 0);
  let job;
  let out;
  let quiet = false;
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (a === "-o" || a === "--output") out = rest[++i];
    else if (a === "-q" || a === "--quiet") quiet = true;
    else if (a === "-h" || a === "--help") usage(0);
    else if (!job) job = a;
    else usage(2);
  }
  if (!job) usage(2);
  out = out || basename(job, extname(job)) + ".wasm";
  try {
    await build(job, out, { quiet });
  } catch (e) {
    console.error(`error: building ${job} failed: ${e && e.message ? e.message : e}`);
    process.exit(1);
  }
}

if (process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))) {
  await main(process.argv.slice(2));
}
