//! A child process's log, line by line: tests await the line that says something
//! happened (a server listening, a replica synced) instead of polling for it.

use std::io::{BufRead as _, Read};
use std::time::Duration;

/// The lines a child writes on one stream, read on a thread of their own (so the pipe
/// never fills) and all kept.
pub struct Log {
    incoming: tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    /// Lines before this one are not searched.
    from: usize,
    /// What the process is, for messages.
    name: String,
}

impl Log {
    /// Reads `stream` from now on.
    pub fn follow(stream: impl Read + Send + 'static, name: impl Into<String>) -> Self {
        let (tx, incoming) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream)
                .lines()
                .map_while(Result::ok)
            {
                // Once nobody reads, the pipe is still drained.
                let _ = tx.send(line);
            }
        });
        Self {
            incoming,
            seen: Vec::new(),
            from: 0,
            name: name.into(),
        }
    }

    /// From now on, only lines logged after this call are searched.
    #[allow(dead_code, reason = "shared by test files that use a subset of it")]
    pub fn mark(&mut self) {
        while let Ok(line) = self.incoming.try_recv() {
            self.seen.push(line);
        }
        self.from = self.seen.len();
    }

    /// Waits, at most `within`, until a line logged since the mark contains `needle`.
    /// Panics, saying which process and what it waited for, if the process exits or the
    /// time passes first.
    pub async fn line(&mut self, needle: &str, within: Duration) -> String {
        match self.wait_for(needle, within).await {
            Ok(line) => line,
            Err(Ended::Exited) => panic!(
                "{} exited before logging `{needle}`; its last lines: {:?}",
                self.name,
                self.tail()
            ),
            Err(Ended::TimedOut) => {
                panic!("{} did not log `{needle}` within {within:?}", self.name)
            }
        }
    }

    /// [`Log::line`], saying how it ended rather than panicking.
    pub async fn wait_for(&mut self, needle: &str, within: Duration) -> Result<String, Ended> {
        if let Some(line) = self.seen[self.from..].iter().find(|l| l.contains(needle)) {
            return Ok(line.clone());
        }
        let found = tokio::time::timeout(within, async {
            while let Some(line) = self.incoming.recv().await {
                self.seen.push(line);
                let line = self.seen.last().expect("just pushed");
                if line.contains(needle) {
                    return Some(line.clone());
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => Ok(line),
            Ok(None) => Err(Ended::Exited),
            Err(_) => Err(Ended::TimedOut),
        }
    }

    /// The last few lines it logged.
    pub fn tail(&self) -> &[String] {
        &self.seen[self.seen.len().saturating_sub(5)..]
    }
}

/// How a wait for a line ended without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The process closed its stream.
    Exited,
    /// The time passed.
    TimedOut,
}
