//! Terminal setup and, above all, restoration: on normal exit (the guard's
//! `Drop`), on error (the same), and on a panic of the UI thread (a hook
//! that restores before the message is printed, so it lands on a sane
//! screen).
//!
//! A panic on another thread (the worker's, caught at its job boundary and
//! reported in a popup) must not touch the terminal: restoring it there
//! would leave the UI drawing over a normal screen, and printing the
//! message would scribble over the UI. While the guard is up such messages
//! are kept and printed to stderr once the terminal is restored.

use std::io::{self, Stdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread::ThreadId;

use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
};
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use crossterm::{cursor, execute};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

use crate::util::text::for_terminal;

pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// Whether a guard holds the terminal (the alternate screen is up).
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Panic messages of other threads, printed after restoring.
static DEFERRED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Restores the terminal when dropped.
pub struct TerminalGuard {
    pub terminal: Term,
    mouse: bool,
}

fn restore(mouse: bool) {
    ACTIVE.store(false, Ordering::SeqCst);
    let _ = disable_raw_mode();
    let mut out = io::stdout();
    if mouse {
        let _ = execute!(out, DisableMouseCapture);
    }
    let _ = execute!(
        out,
        DisableBracketedPaste,
        LeaveAlternateScreen,
        cursor::Show
    );
}

/// Installs the panic hook: the UI thread's panic restores the terminal
/// first; another thread's is kept for later while the terminal is held.
fn install_hook(ui: ThreadId, mouse: bool) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !ACTIVE.load(Ordering::SeqCst) {
            return previous(info);
        }
        let current = std::thread::current();
        if current.id() == ui {
            restore(mouse);
            return previous(info);
        }
        let name = current.name().unwrap_or("unnamed").to_string();
        let mut deferred = DEFERRED.lock().unwrap_or_else(|e| e.into_inner());
        deferred.push(format!("thread '{name}' {info}"));
    }));
}

/// The panic messages of other threads kept while the terminal was held.
pub fn take_deferred_panics() -> Vec<String> {
    std::mem::take(&mut *DEFERRED.lock().unwrap_or_else(|e| e.into_inner()))
}

impl TerminalGuard {
    /// Raw mode, alternate screen, bracketed paste (a paste arrives as one
    /// event), optional mouse, and the panic hook.
    pub fn enter(mouse: bool) -> io::Result<TerminalGuard> {
        install_hook(std::thread::current().id(), mouse);
        ACTIVE.store(true, Ordering::SeqCst);
        let entered = (|| {
            enable_raw_mode()?;
            let mut out = io::stdout();
            execute!(out, EnterAlternateScreen, EnableBracketedPaste)?;
            if mouse {
                execute!(out, EnableMouseCapture)?;
            }
            Terminal::new(CrosstermBackend::new(out))
        })();
        let terminal = entered.inspect_err(|_| restore(mouse))?;
        Ok(TerminalGuard { terminal, mouse })
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore(self.mouse);
        for msg in take_deferred_panics() {
            eprintln!("{}", for_terminal(&msg));
        }
    }
}
