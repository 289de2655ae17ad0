//! Reading passwords and secret values from standard input. Piped in, they are read as they
//! come; typed at a terminal, each is asked for on its own line and the typing is not shown
//! (echo is off before the prompt appears, and back on when the line is read, when reading
//! fails, and when Ctrl-C stops the command).

use std::io::{BufRead, IsTerminal, Read};

use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions, Termios};

/// Whether standard input is a terminal (someone types the values).
pub fn typed() -> bool {
    std::io::stdin().is_terminal()
}

/// One value per prompt. At a terminal: each prompt on stderr, then one line read with echo
/// off. Piped: the first `prompts.len()` lines of stdin. A missing or empty line is an error
/// naming `what`.
pub fn lines(prompts: &[&str], what: &str) -> Result<Vec<String>, String> {
    let got: Vec<String> = if typed() {
        let mut v = Vec::new();
        for p in prompts {
            v.push(
                typed_line(p)
                    .map_err(|e| format!("failed to read {what} from the terminal: {e}"))?,
            );
        }
        v
    } else {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("failed to read {what} from standard input: {e}"))?;
        s.lines().take(prompts.len()).map(str::to_string).collect()
    };
    if got.len() < prompts.len() || got.iter().any(String::is_empty) {
        return Err(format!("standard input needs {what}, one per line"));
    }
    Ok(got)
}

/// Everything piped in, as bytes (a secret may span lines: a key file); typed at a terminal,
/// one line, not shown.
pub fn value(prompt: &str) -> std::io::Result<Vec<u8>> {
    if typed() {
        return typed_line(prompt).map(String::into_bytes);
    }
    let mut raw = Vec::new();
    std::io::stdin().read_to_end(&mut raw)?;
    Ok(raw)
}

/// Echo off, the prompt, one line (its end removed), echo back on.
fn typed_line(prompt: &str) -> std::io::Result<String> {
    let stdin = std::io::stdin();
    let _quiet = Quiet::on(&stdin)?;
    eprint!("{prompt} ");
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let line = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line)
        .to_string();
    Ok(line)
}

/// The terminal's echo turned off for as long as this lives (the newline still shows, so the
/// next output starts on its own line).
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
        restore_on_ctrl_c(before.clone());
        tcsetattr(fd, OptionalActions::Now, &quiet)?;
        Ok(Quiet { fd, before })
    }
}

/// From now on, Ctrl-C puts the terminal back as `before` and ends the command (exit code 130,
/// as a shell reports a command stopped by SIGINT), instead of leaving the terminal silent.
fn restore_on_ctrl_c(before: Termios) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
    rt.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = tcsetattr(std::io::stdin(), OptionalActions::Now, &before);
            eprintln!();
            std::process::exit(130);
        }
    });
}

impl Drop for Quiet<'_> {
    fn drop(&mut self) {
        let _ = tcsetattr(self.fd, OptionalActions::Now, &self.before);
    }
}
