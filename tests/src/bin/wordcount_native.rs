//! The word count example's pipeline with native closures on the same
//! engine (no WebAssembly): what the component would cost without the
//! sandbox. Usage: wordcount-native INPUT OUTPUT [PARALLELISM]

use std::sync::Arc;
use weir_core::{Config, JobGraph, JobId};
use weir_runtime::{JobOutcome, JobSpec};
use weir_tests::native::NativeJob;

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let args = vec![
        "--input".into(),
        a[1].clone(),
        "--output".into(),
        a[2].clone(),
    ];
    let config = Config {
        parallelism: a.get(3).map(|p| p.parse()).transpose()?.unwrap_or(1),
        ..Config::default()
    };
    let plan = NativeJob::plan(wordcount::WEIR_JOBS, None, &args)?;
    let graph = JobGraph::from_plan(plan, &config)?;
    let work = tempfile::tempdir()?;
    let handle = weir_runtime::start(JobSpec {
        job_id: JobId::random(),
        config,
        factory: Arc::new(NativeJob::new(wordcount::WEIR_JOBS, None, args, graph)),
        work_dir: work.path().to_owned(),
        restore: None,
        lineage: None,
        listener: None,
        connectors: weir_runtime::Connectors::builtin(),
        cluster: None,
    })?;
    match handle.wait() {
        JobOutcome::Finished => Ok(()),
        other => anyhow::bail!("native word count ended with {other:?}"),
    }
}
