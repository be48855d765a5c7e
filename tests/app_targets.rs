//! Targets the loaded model lacks, through `update`: a parallel-block
//! (GPT-NeoX style) model has no `hook_resid_mid`. A session holding a
//! `resid_mid` sweep opens and says that sweep cannot run here; the sweep
//! pane shows why instead of an estimate; running it is refused with the
//! reason and nothing is sent to the worker.

mod app_support;

use app_support::*;
use patchbench::app::messages::{Request, WorkerMsg};
use patchbench::app::sessions::to_session;
use patchbench::app::settings::EstimateState;
use patchbench::app::state::{Level, SweepView};
use patchbench::app::{Action, Command, Intent};
use patchbench::patching::{SweepSpec, Target};
use patchbench::session::Loaded;

fn parallel_info() -> patchbench::app::messages::ModelInfo {
    let mut i = info();
    i.config.parallel_attn_mlp = true;
    i.config.family = "gpt_neox".into();
    i
}

fn sent(cmds: &[Command], f: impl Fn(&Request) -> bool) -> bool {
    cmds.iter().any(|c| matches!(c, Command::Worker(r) if f(r)))
}

#[test]
fn a_session_with_a_target_the_model_lacks_reports_it_and_refuses_to_run_it() {
    // A session with a resid_mid sweep, written with a sequential model.
    let mut other = ready();
    other.settings.spec = SweepSpec::new(Target::ResidMid);
    other
        .sweeps
        .push(SweepView::new(other.settings.spec.clone()));
    let session = to_session(&other);

    // Opened while a parallel-block model of the same source is loaded.
    let mut s = state();
    worker(&mut s, WorkerMsg::ModelLoaded(Box::new(parallel_info())));
    let cmds = act(
        &mut s,
        Action::SessionLoaded {
            path: "/tmp/resid-mid.yaml".into(),
            result: Ok(Box::new(Loaded {
                session,
                warnings: vec![],
            })),
        },
    );
    let st = s.status.clone().unwrap();
    assert_eq!(st.level, Level::Warn);
    assert!(
        st.text.contains("cannot run here") && st.text.contains("resid_mid"),
        "{}",
        st.text
    );
    // No estimate is asked for; the pane says why.
    assert!(!sent(&cmds, |r| matches!(r, Request::Estimate { .. })));
    match &s.settings.estimate {
        EstimateState::Failed(e) => assert!(
            e.contains("hook_resid_mid") && e.contains("gpt_neox"),
            "{e}"
        ),
        other => panic!("expected the reason, got {other:?}"),
    }
    // Running it is refused, naming the target, the family and what to use.
    s.focus = patchbench::app::Focus::Heatmap;
    let cmds = key(&mut s, Intent::RunSweep);
    assert!(
        !sent(&cmds, |r| matches!(r, Request::Sweep { .. })),
        "{cmds:?}"
    );
    assert!(s.running.is_none());
    let st = s.status.clone().unwrap();
    assert_eq!(st.level, Level::Error);
    assert!(
        st.text.starts_with("cannot run: target resid_mid"),
        "{}",
        st.text
    );
    assert!(
        st.text.contains("resid_pre"),
        "suggests another target: {}",
        st.text
    );

    // Choosing an available target runs.
    s.settings.spec = SweepSpec::new(Target::ResidPre);
    let cmds = key(&mut s, Intent::RunSweep);
    assert!(sent(&cmds, |r| matches!(r, Request::Sweep { .. })));
}

#[test]
fn the_same_session_on_a_sequential_model_runs() {
    let mut s = ready();
    s.settings.spec = SweepSpec::new(Target::ResidMid);
    let cmds = key(&mut s, Intent::RunSweep);
    assert!(sent(&cmds, |r| matches!(r, Request::Sweep { .. })));
}
