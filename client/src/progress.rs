//! A spinner on stderr while a long operation (create, pull, start,
//! suspend, resume, stop, delete) is under way, with a pull's progress — only when stderr is a terminal, so
//! that scripts and pipes see nothing but the result.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const TICK: Duration = Duration::from_millis(100);

/// A running spinner; [`Progress::finish`] erases it.
#[derive(Debug)]
pub struct Progress {
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Progress {
    /// Shows `suspending counter-1… 0.3s` on stderr if it is a terminal.
    pub fn start(message: String) -> Progress {
        Progress::start_with_detail(message, Arc::default())
    }

    /// As [`Progress::start`], followed by what `detail` holds at each tick
    /// (a pull's bytes, which another task updates).
    pub fn start_with_detail(message: String, detail: Arc<Mutex<String>>) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { running: None };
        }
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let t0 = Instant::now();
            let mut tick = tokio::time::interval(TICK);
            for frame in FRAMES.iter().cycle() {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut stopped => break,
                }
                let detail = detail.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r\x1b[2K{frame} {message}… {:.1}s{}{detail}",
                    t0.elapsed().as_secs_f32(),
                    if detail.is_empty() { "" } else { "  " }
                );
                let _ = err.flush();
            }
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        });
        Progress {
            running: Some((stop, task)),
        }
    }

    /// Stops the spinner and erases its line before the result is printed.
    pub async fn finish(self) {
        if let Some((stop, task)) = self.running {
            let _ = stop.send(());
            let _ = task.await;
        }
    }
}
