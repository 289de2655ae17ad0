//! Reading passwords and secret values from standard input. Piped in, they are read as they
//! come. Typed at a terminal, the typing is not shown: echo is off before the first prompt
//! appears and back on when reading ends, whether the values were read, reading failed, or
//! Ctrl-C (or a TERM, HUP or QUIT signal) stopped the command, which then ends with 128 + the
//! signal's number. Input typed ahead and not read (the rest of a pasted text) is thrown away
//! when reading ends, never left for the shell to run. Ctrl-Z is not handled: the shell that
//! stops kiln sets the terminal as it likes.

use std::io::{BufRead, IsTerminal, Read};

use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions, Termios};

/// Whether standard input is a terminal (someone types the values).
pub fn typed() -> bool {
    std::io::stdin().is_terminal()
}

/// One value per prompt. At a terminal: each prompt on stderr, then one line, echo off
/// throughout. Piped: the first `prompts.len()` lines of stdin. A missing or empty value is an
/// error naming `what`.
pub fn lines(prompts: &[&str], what: &str) -> Result<Vec<String>, String> {
    if typed() {
        let failed = |e: std::io::Error| format!("failed to read {what} from the terminal: {e}");
        let stdin = std::io::stdin();
        let _quiet = Quiet::on(&stdin).map_err(failed)?;
        let mut got = Vec::new();
        for p in prompts {
            eprint!("{p} ");
            let mut line = String::new();
            stdin.lock().read_line(&mut line).map_err(failed)?;
            let line = without_line_end(&line);
            if line.is_empty() {
                return Err(format!("nothing typed for {p:?}: {what} cannot be empty"));
            }
            got.push(line.to_string());
        }
        return Ok(got);
    }
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s).map_err(|e| format!("failed to read {what} from standard input: {e}"))?;
    let got: Vec<String> = s.lines().take(prompts.len()).map(str::to_string).collect();
    if got.len() < prompts.len() || got.iter().any(String::is_empty) {
        return Err(format!("standard input needs {what}, one per line"));
    }
    Ok(got)
}

/// A secret's value as bytes: everything on stdin, piped or typed (typed: up to Ctrl-D, so a
/// pasted key file keeps all its lines; not shown).
pub fn value(prompt: &str) -> std::io::Result<Vec<u8>> {
    let stdin = std::io::stdin();
    let _quiet = if typed() {
        let q = Quiet::on(&stdin)?;
        eprint!("{prompt} ");
        Some(q)
    } else {
        None
    };
    let mut raw = Vec::new();
    stdin.lock().read_to_end(&mut raw)?;
    Ok(raw)
}

/// `line` without one line end (`\n` or `\r\n`) at its end.
pub fn without_line_end(line: &str) -> &str {
    line.strip_suffix('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).unwrap_or(line)
}

/// The terminal's echo turned off for as long as this lives (the newline still shows, so the
/// next output starts on its own line). Dropped, it puts the terminal back and throws away
/// what was typed and not read.
struct Quiet<'a> {
    fd: &'a std::io::Stdin,
    before: Termios,
}

impl<'a> Quiet<'a> {
    fn on(fd: &'a std::io::Stdin) -> std::io::Result<Self> {
        let before = tcgetattr(fd)?;
        let mut quiet = before.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        quiet.local_modes.insert(LocalModes::ECHONL);
        restore_on_signal(before.clone());
        tcsetattr(fd, OptionalActions::Now, &quiet)?;
        Ok(Quiet { fd, before })
    }
}

impl Drop for Quiet<'_> {
    fn drop(&mut self) {
        let _ = tcsetattr(self.fd, OptionalActions::Flush, &self.before);
    }
}

/// From now on, Ctrl-C (SIGINT), SIGTERM, SIGHUP and SIGQUIT put the terminal back as `before`
/// and end the command with 128 + the signal's number (as a shell reports a command a signal
/// stopped), instead of leaving the terminal silent. The handlers are in place before this
/// returns, so before echo goes off.
fn restore_on_signal(before: Termios) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
    let (Ok(mut int), Ok(mut term), Ok(mut hup), Ok(mut quit)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()), signal(SignalKind::hangup()), signal(SignalKind::quit())) else {
        return;
    };
    rt.spawn(async move {
        let n = tokio::select! {
            _ = int.recv() => 2,
            _ = term.recv() => 15,
            _ = hup.recv() => 1,
            _ = quit.recv() => 3,
        };
        let _ = tcsetattr(std::io::stdin(), OptionalActions::Flush, &before);
        eprintln!();
        std::process::exit(128 + n);
    });
}
