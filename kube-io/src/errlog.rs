//! Logging errors once per cause: shared by tide-agent and tide-scheduler, whose loops meet
//! the same failure many times (every tick, every request) and must not flood their logs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Keeps the log readable when one cause fails every tick (a refused `oom_score_adj` write for
/// each process, an API server answering 429): each cause is logged when first seen, then at
/// most once per `every` with the count of repeats in between. Every error is still counted in
/// the component's error counters.
#[derive(Debug)]
pub struct ErrorLog {
    every: Duration,
    seen: HashMap<String, (Instant, u64)>,
}

/// Causes remembered at most; past it the oldest half is forgotten (and logged again if seen).
const ERROR_LOG_CAUSES: usize = 1024;

impl ErrorLog {
    /// A log that repeats a cause at most once per `every`.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            seen: HashMap::new(),
        }
    }

    /// The cause of an error message: the message with numbers and long hex identifiers
    /// (PIDs, container IDs, pod UIDs, addresses) blanked, so one cause met by many processes
    /// or pods is one key.
    pub fn cause(message: &str) -> String {
        let mut out = String::with_capacity(message.len());
        let mut token = String::new();
        let flush = |token: &mut String, out: &mut String| {
            // The longest hex-looking tail (`pod<uid>`, a container ID, a PID).
            let tail = token
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_hexdigit() || *c == '-')
                .count();
            let head = &token[..token.len() - tail];
            let tail_text = &token[token.len() - tail..];
            let digits = tail_text.chars().any(|c| c.is_ascii_digit());
            let numeric = !token.is_empty() && token.chars().all(|c| c.is_ascii_digit());
            if numeric || (digits && tail >= 8) {
                out.push_str(if numeric { "" } else { head });
                out.push('#');
            } else {
                out.push_str(token);
            }
            token.clear();
        };
        for c in message.chars() {
            if c.is_ascii_alphanumeric() || c == '-' {
                token.push(c);
            } else {
                flush(&mut token, &mut out);
                out.push(c);
            }
        }
        flush(&mut token, &mut out);
        out
    }

    /// The lines to print for this tick's `errors` at `now`, each error's cause taken from
    /// its text ([`ErrorLog::cause`]).
    pub fn lines(&mut self, errors: &[String], now: Instant) -> Vec<String> {
        errors
            .iter()
            .filter_map(|e| self.line(&Self::cause(e), e, now))
            .collect()
    }

    /// The line to print, if any, for `message` whose cause the caller names (`bind: 429`
    /// when the message also names a pod).
    pub fn line(&mut self, cause: &str, message: &str, now: Instant) -> Option<String> {
        if let Some((last, repeats)) = self.seen.get_mut(cause) {
            *repeats += 1;
            let since = now.saturating_duration_since(*last);
            if since < self.every {
                return None;
            }
            let line = format!(
                "{message} (seen {repeats} more times like this in the last {} s)",
                since.as_secs()
            );
            *last = now;
            *repeats = 0;
            return Some(line);
        }
        if self.seen.len() >= ERROR_LOG_CAUSES {
            let mut by_age: Vec<(Instant, String)> = self
                .seen
                .iter()
                .map(|(k, (t, _))| (*t, k.clone()))
                .collect();
            by_age.sort();
            for (_, k) in by_age.into_iter().take(ERROR_LOG_CAUSES / 2) {
                self.seen.remove(&k);
            }
        }
        self.seen.insert(cause.to_owned(), (now, 0));
        Some(message.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cause_is_logged_once_then_summarised() {
        let mut log = ErrorLog::new(Duration::from_secs(600));
        let t0 = Instant::now();
        let refused =
            |pid: u32| format!("apply: /proc/{pid}/oom_score_adj: Permission denied (os error 13)");
        // Tick 1: three processes refuse: one line.
        let first = log.lines(&[refused(101), refused(102), refused(103)], t0);
        assert_eq!(first, vec![refused(101)]);
        // Every later tick within ten minutes: nothing.
        for s in 1..600 {
            let t = t0 + Duration::from_secs(s);
            assert!(log.lines(&[refused(101), refused(102)], t).is_empty());
        }
        // A different cause is still logged at once.
        let other = "publish: connection refused".to_owned();
        assert_eq!(
            log.lines(std::slice::from_ref(&other), t0 + Duration::from_secs(5)),
            vec![other]
        );
        // After ten minutes: one summary with the count (2 + 599 × 2 + this one).
        let later = log.lines(&[refused(104)], t0 + Duration::from_secs(600));
        assert_eq!(later.len(), 1);
        assert!(later[0].contains("1201 more times"), "{later:?}");
        // Container IDs and UIDs are not causes either.
        let gone = |uid: &str, id: &str| {
            ErrorLog::cause(&format!(
                "collect: kubepods/besteffort/pod{uid}/{id}/cpuacct.usage: No such file or directory (os error 2)"
            ))
        };
        assert_eq!(
            gone("5a5a5a5a-0000-4000-8000-000000000003", &"ab12".repeat(16)),
            gone("77777777-0000-4000-8000-000000000009", &"9f3e".repeat(16)),
        );
        assert_ne!(
            ErrorLog::cause("publish: connection refused"),
            ErrorLog::cause("publish: timed out")
        );
    }

    #[test]
    fn the_cause_table_stays_bounded() {
        let mut log = ErrorLog::new(Duration::from_secs(600));
        let t0 = Instant::now();
        for i in 0..5_000 {
            let e = format!("cause-{} broke", "x".repeat(i % 3000));
            log.lines(&[e], t0 + Duration::from_millis(i as u64));
        }
        assert!(log.seen.len() <= ERROR_LOG_CAUSES);
    }
}
