//! Which connector opens which kind. The runtime finds connectors through a
//! [`Connectors`] registry handed to it with the job, as it finds guests
//! through its `GuestFactory`, rather than by naming the crates that
//! implement them: whoever starts jobs (the command line, the session, a
//! worker) says which connectors exist.

use crate::{DeadLetterSink, SinkContext, SinkWriter, SourceContext, SourceReader};
use std::sync::Arc;
use weir_core::Failure;
use weir_core::config::JobOwner;
use weir_core::plan::Connector;

/// A set of connector kinds and how to open them.
pub trait ConnectorProvider: Send + Sync {
    /// The source kinds it opens.
    fn sources(&self) -> &'static [&'static str];
    /// The sink kinds it opens.
    fn sinks(&self) -> &'static [&'static str];
    /// Opens a source subtask (of a kind in `sources`).
    fn open_source(
        &self,
        c: &Connector,
        ctx: &SourceContext,
    ) -> Result<Box<dyn SourceReader>, Failure>;
    /// Opens a sink subtask (of a kind in `sinks`).
    fn open_sink(&self, c: &Connector, ctx: &SinkContext) -> Result<Box<dyn SinkWriter>, Failure>;
    /// Where a source of this provider sends records it cannot decode,
    /// under `'decode-errors' = 'dead-letter'`.
    fn dead_letter(
        &self,
        c: &Connector,
        _owner: &JobOwner,
    ) -> Result<Box<dyn DeadLetterSink>, Failure> {
        Err(Failure::user(format!(
            "'decode-errors' = 'dead-letter' is not supported by the '{}' connector; use \
             'fail' or 'skip'",
            c.kind
        )))
    }
    /// Checks a connector's options for the job's owner before the job
    /// starts (secrets that exist, what a tenant may set, files in its
    /// folder), so that a submission is refused with the option named.
    fn check_options(&self, _c: &Connector, _owner: &JobOwner) -> Result<(), Failure> {
        Ok(())
    }
}

/// The connectors jobs may use; later providers win for a kind both name.
#[derive(Clone)]
pub struct Connectors {
    providers: Vec<Arc<dyn ConnectorProvider>>,
}

impl Default for Connectors {
    fn default() -> Self {
        Connectors::builtin()
    }
}

impl std::fmt::Debug for Connectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connectors")
            .field("sources", &self.kinds(|p| p.sources()))
            .field("sinks", &self.kinds(|p| p.sinks()))
            .finish()
    }
}

impl Connectors {
    /// The connectors of this crate: file, socket, datagen and nexmark
    /// sources; print, file and blackhole sinks.
    pub fn builtin() -> Self {
        Connectors {
            providers: vec![Arc::new(crate::Builtin)],
        }
    }

    /// Adds a provider.
    pub fn with(mut self, p: Arc<dyn ConnectorProvider>) -> Self {
        self.providers.push(p);
        self
    }

    fn kinds(&self, f: impl Fn(&dyn ConnectorProvider) -> &'static [&'static str]) -> Vec<&str> {
        let mut k: Vec<&str> = self
            .providers
            .iter()
            .flat_map(|p| f(p.as_ref()))
            .copied()
            .collect();
        k.sort_unstable();
        k.dedup();
        k
    }

    fn source_of(&self, kind: &str) -> Option<&dyn ConnectorProvider> {
        self.providers
            .iter()
            .rev()
            .find(|p| p.sources().contains(&kind))
            .map(|p| p.as_ref())
    }

    fn sink_of(&self, kind: &str) -> Option<&dyn ConnectorProvider> {
        self.providers
            .iter()
            .rev()
            .find(|p| p.sinks().contains(&kind))
            .map(|p| p.as_ref())
    }

    fn unknown(&self, what: &str, kind: &str, known: Vec<&str>) -> Failure {
        Failure::user(format!(
            "unknown {what} connector '{kind}'; this Weir knows {}",
            known.join(", ")
        ))
    }

    /// Opens a source subtask for `c`.
    pub fn open_source(
        &self,
        c: &Connector,
        ctx: &SourceContext,
    ) -> Result<Box<dyn SourceReader>, Failure> {
        match self.source_of(&c.kind) {
            Some(p) => p.open_source(c, ctx),
            None => Err(self.unknown("source", &c.kind, self.kinds(|p| p.sources()))),
        }
    }

    /// Opens a sink subtask for `c`.
    pub fn open_sink(
        &self,
        c: &Connector,
        ctx: &SinkContext,
    ) -> Result<Box<dyn SinkWriter>, Failure> {
        match self.sink_of(&c.kind) {
            Some(p) => p.open_sink(c, ctx),
            None => Err(self.unknown("sink", &c.kind, self.kinds(|p| p.sinks()))),
        }
    }

    /// Where the source `c` sends records it cannot decode.
    pub fn dead_letter(
        &self,
        c: &Connector,
        owner: &JobOwner,
    ) -> Result<Box<dyn DeadLetterSink>, Failure> {
        match self.source_of(&c.kind) {
            Some(p) => p.dead_letter(c, owner),
            None => Err(self.unknown("source", &c.kind, self.kinds(|p| p.sources()))),
        }
    }

    /// Checks `c`'s options for `owner` (see
    /// [`ConnectorProvider::check_options`]); unknown kinds are left to the
    /// open, which names the known ones.
    pub fn check_options(&self, c: &Connector, owner: &JobOwner) -> Result<(), Failure> {
        match self.source_of(&c.kind).or_else(|| self.sink_of(&c.kind)) {
            Some(p) => p.check_options(c, owner),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Extra;

    impl ConnectorProvider for Extra {
        fn sources(&self) -> &'static [&'static str] {
            &["queue"]
        }
        fn sinks(&self) -> &'static [&'static str] {
            &["table", "print"]
        }
        fn open_source(
            &self,
            _: &Connector,
            _: &SourceContext,
        ) -> Result<Box<dyn SourceReader>, Failure> {
            Err(Failure::user("queue opened"))
        }
        fn open_sink(
            &self,
            c: &Connector,
            _: &SinkContext,
        ) -> Result<Box<dyn SinkWriter>, Failure> {
            Err(Failure::user(format!("{} opened by extra", c.kind)))
        }
        fn check_options(&self, _: &Connector, _: &JobOwner) -> Result<(), Failure> {
            Err(Failure::user("checked by extra"))
        }
    }

    fn connector(kind: &str) -> Connector {
        Connector {
            kind: kind.into(),
            options: Vec::new(),
        }
    }

    #[test]
    fn kinds_go_to_their_provider_and_unknown_ones_are_named() {
        let c = Connectors::builtin().with(Arc::new(Extra));
        let owner = JobOwner::default();
        let err = |r: Result<(), Failure>| r.unwrap_err().message;
        assert_eq!(
            err(c.check_options(&connector("table"), &owner)),
            "checked by extra"
        );
        // A later provider wins a kind both name.
        assert_eq!(
            err(c.check_options(&connector("print"), &owner)),
            "checked by extra"
        );
        assert!(c.check_options(&connector("blackhole"), &owner).is_ok());
        assert!(c.check_options(&connector("nope"), &owner).is_ok());
        let dl = c.dead_letter(&connector("file"), &owner).err().unwrap();
        assert!(
            dl.message.contains("not supported by the 'file' connector"),
            "{}",
            dl.message
        );
        let dl = c.dead_letter(&connector("nope"), &owner).err().unwrap();
        assert!(
            dl.message.contains("unknown source connector 'nope'")
                && dl.message.contains("datagen, file, nexmark, queue, socket"),
            "{}",
            dl.message
        );
        assert_eq!(
            format!("{c:?}"),
            "Connectors { sources: [\"datagen\", \"file\", \"nexmark\", \"queue\", \"socket\"], \
             sinks: [\"blackhole\", \"file\", \"print\", \"table\"] }"
        );
    }
}
