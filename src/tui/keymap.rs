//! Keymaps: keys to intents, per context, from YAML.
//!
//! The defaults (`keymap.yaml` beside this file) are embedded; a user file
//! merges over them key by key, so it can be three lines. A user file that
//! does not parse, or names an unknown key, context or intent, is reported
//! and ignored as a whole (a half-applied keymap is worse than none).
//! The help screen is generated from the resolved map and each intent's
//! description.

use std::collections::BTreeMap;
use std::path::Path;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::app::Intent;
use crate::util::fs::{limits, read_text_capped, ReadError};

pub const DEFAULT_KEYMAP: &str = include_str!("keymap.yaml");

/// What must stay reachable whatever a user keymap says: the contexts
/// consulted (as `input::contexts` orders them) and the intents of which
/// one must be bound there.
const WAYS_OUT: &[(&[Context], &[Intent])] = &[
    (&[Context::Prompts, Context::Global], &[Intent::Quit]),
    (&[Context::Settings, Context::Global], &[Intent::Quit]),
    (&[Context::Heatmap, Context::Global], &[Intent::Quit]),
    (&[Context::Circuit, Context::Global], &[Intent::Quit]),
    (&[Context::Dataset, Context::Global], &[Intent::Quit]),
    (&[Context::Drill, Context::Global], &[Intent::Quit]),
    (&[Context::Edit], &[Intent::Back, Intent::Select]),
    (&[Context::Dialog], &[Intent::Yes]),
    (
        &[Context::Help],
        &[Intent::Back, Intent::Help, Intent::Quit, Intent::Select],
    ),
    (
        &[Context::Browser],
        &[Intent::Back, Intent::Open, Intent::Quit],
    ),
];

/// Where a binding applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Context {
    Global,
    Prompts,
    Settings,
    Heatmap,
    Circuit,
    Dataset,
    Drill,
    Edit,
    Dialog,
    Browser,
    Help,
}

impl Context {
    pub const ALL: [Context; 11] = [
        Context::Global,
        Context::Prompts,
        Context::Settings,
        Context::Heatmap,
        Context::Circuit,
        Context::Dataset,
        Context::Drill,
        Context::Edit,
        Context::Dialog,
        Context::Browser,
        Context::Help,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Context::Global => "global",
            Context::Prompts => "prompts",
            Context::Settings => "settings",
            Context::Heatmap => "heatmap",
            Context::Circuit => "circuit",
            Context::Dataset => "dataset",
            Context::Drill => "drill",
            Context::Edit => "edit",
            Context::Dialog => "dialog",
            Context::Browser => "browser",
            Context::Help => "help",
        }
    }
}

/// A key with modifiers; characters carry their own case, so `S` needs no shift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub code: KeyCodeOrd,
    pub ctrl: bool,
    pub alt: bool,
}

/// `KeyCode` subset with an order (for stable help output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyCodeOrd {
    Char(char),
    F(u8),
    Named(&'static str),
}

const NAMED: &[(&str, KeyCode)] = &[
    ("enter", KeyCode::Enter),
    ("esc", KeyCode::Esc),
    ("tab", KeyCode::Tab),
    ("backtab", KeyCode::BackTab),
    ("up", KeyCode::Up),
    ("down", KeyCode::Down),
    ("left", KeyCode::Left),
    ("right", KeyCode::Right),
    ("pageup", KeyCode::PageUp),
    ("pagedown", KeyCode::PageDown),
    ("home", KeyCode::Home),
    ("end", KeyCode::End),
    ("backspace", KeyCode::Backspace),
    ("delete", KeyCode::Delete),
];

impl Key {
    pub fn parse(s: &str) -> Result<Key, String> {
        let mut rest = s;
        let (mut ctrl, mut alt) = (false, false);
        loop {
            if let Some(r) = rest.strip_prefix("ctrl-").filter(|r| !r.is_empty()) {
                ctrl = true;
                rest = r;
            } else if let Some(r) = rest.strip_prefix("alt-").filter(|r| !r.is_empty()) {
                alt = true;
                rest = r;
            } else {
                break;
            }
        }
        let code = if rest == "shift-tab" {
            KeyCodeOrd::Named("backtab")
        } else if rest == "space" {
            KeyCodeOrd::Char(' ')
        } else if let Some((n, _)) = NAMED.iter().find(|(n, _)| *n == rest) {
            KeyCodeOrd::Named(n)
        } else if let Some(n) = rest
            .strip_prefix('f')
            .and_then(|d| d.parse::<u8>().ok())
            .filter(|n| (1..=12).contains(n))
        {
            KeyCodeOrd::F(n)
        } else {
            let mut chars = rest.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => KeyCodeOrd::Char(c),
                _ => return Err(format!("unknown key {s:?}: use one character or a name like enter, esc, tab, up, f1, with ctrl-/alt- prefixes")),
            }
        };
        Ok(Key { code, ctrl, alt })
    }

    pub fn from_event(e: &KeyEvent) -> Option<Key> {
        let code = match e.code {
            KeyCode::Char(c) => KeyCodeOrd::Char(if e.modifiers.contains(KeyModifiers::CONTROL) {
                c.to_ascii_lowercase()
            } else {
                c
            }),
            KeyCode::F(n) => KeyCodeOrd::F(n),
            other => KeyCodeOrd::Named(NAMED.iter().find(|(_, c)| *c == other)?.0),
        };
        Some(Key {
            code,
            ctrl: e.modifiers.contains(KeyModifiers::CONTROL),
            alt: e.modifiers.contains(KeyModifiers::ALT),
        })
    }

    /// How the key is written in keymap files and shown in help.
    pub fn label(&self) -> String {
        let mut s = String::new();
        if self.ctrl {
            s.push_str("ctrl-");
        }
        if self.alt {
            s.push_str("alt-");
        }
        match self.code {
            KeyCodeOrd::Char(' ') => s.push_str("space"),
            KeyCodeOrd::Char(c) => s.push(c),
            KeyCodeOrd::F(n) => s.push_str(&format!("f{n}")),
            KeyCodeOrd::Named(n) => s.push_str(n),
        }
        s
    }
}

/// The resolved keymap.
#[derive(Debug, Clone)]
pub struct Keymap {
    map: BTreeMap<Context, BTreeMap<Key, Intent>>,
}

type RawKeymap = BTreeMap<String, BTreeMap<String, String>>;

fn apply(map: &mut BTreeMap<Context, BTreeMap<Key, Intent>>, text: &str) -> Result<(), String> {
    let raw: RawKeymap = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    // Validate everything before changing anything.
    let mut changes = Vec::new();
    for (ctx, keys) in raw {
        let c = Context::ALL
            .iter()
            .copied()
            .find(|c| c.name() == ctx)
            .ok_or_else(|| {
                let names: Vec<&str> = Context::ALL.iter().map(|c| c.name()).collect();
                format!(
                    "unknown context {ctx:?}; contexts are: {}",
                    names.join(", ")
                )
            })?;
        for (k, intent) in keys {
            let key = Key::parse(&k).map_err(|e| format!("{ctx}: {e}"))?;
            let i = if intent == "none" {
                None
            } else {
                Some(Intent::from_name(&intent).ok_or_else(|| {
                    let names: Vec<&str> = Intent::ALL.iter().map(|i| i.name()).collect();
                    format!(
                        "{ctx}.{k}: unknown action {intent:?}; actions are: {}",
                        names.join(", ")
                    )
                })?)
            };
            changes.push((c, key, i));
        }
    }
    for (c, key, i) in changes {
        let m = map.entry(c).or_default();
        match i {
            Some(i) => m.insert(key, i),
            None => m.remove(&key),
        };
    }
    Ok(())
}

impl Keymap {
    pub fn defaults() -> Keymap {
        let mut map = BTreeMap::new();
        apply(&mut map, DEFAULT_KEYMAP).expect("the embedded keymap is valid");
        Keymap { map }
    }

    /// The defaults with a user file's text merged over them.
    pub fn with_user_text(text: &str) -> Result<Keymap, String> {
        Keymap::from_user_text(text).map(|(k, _)| k)
    }

    /// The defaults with a user file's text merged over them, and the
    /// ways out it broke restored; the notes say which (see
    /// [`Keymap::repair_ways_out`]).
    pub fn from_user_text(text: &str) -> Result<(Keymap, Vec<String>), String> {
        let mut k = Keymap::defaults();
        apply(&mut k.map, text)?;
        let notes = k.repair_ways_out();
        Ok((k, notes))
    }

    /// Makes sure a user keymap cannot lock the user in: quit stays
    /// reachable from every pane (a pane's own binding of the key must not
    /// shadow it), editing can be left, the quit dialog answered, and the
    /// help and browser popups closed. Where a requirement fails, the
    /// default keys for it are bound again in the context that wins, and a
    /// note says so.
    pub fn repair_ways_out(&mut self) -> Vec<String> {
        let defaults = Keymap::defaults();
        let mut notes = Vec::new();
        for (ctxs, intents) in WAYS_OUT {
            let reachable = |k: &Keymap| {
                k.bound_keys(ctxs)
                    .iter()
                    .any(|key| k.lookup(ctxs, key).is_some_and(|i| intents.contains(&i)))
            };
            if reachable(self) || !reachable(&defaults) {
                continue;
            }
            // Rebind in the widest context first (global: one repair
            // serves every pane), in the pane's own if that one shadows it.
            let mut restored = Vec::new();
            for &ctx in ctxs.iter().rev() {
                for key in defaults.bound_keys(ctxs) {
                    if let Some(i) = defaults.lookup(ctxs, &key).filter(|i| intents.contains(i)) {
                        self.map.entry(ctx).or_default().insert(key, i);
                        restored.push(format!("{} {} ({})", key.label(), i.name(), ctx.name()));
                    }
                }
                if reachable(self) {
                    break;
                }
            }
            notes.push(format!(
                "no key was left for {} in {}; restored {}",
                intents
                    .iter()
                    .map(|i| i.name())
                    .collect::<Vec<_>>()
                    .join("/"),
                ctxs[0].name(),
                restored.join(", ")
            ));
        }
        notes
    }

    /// Every key bound in any of `contexts`.
    fn bound_keys(&self, contexts: &[Context]) -> Vec<Key> {
        contexts
            .iter()
            .filter_map(|c| self.map.get(c))
            .flat_map(|m| m.keys().copied())
            .collect()
    }

    /// The defaults merged with `dir/keymap.yaml` if it exists; a warning
    /// names the file and the problem when it cannot be used, or what was
    /// repaired. The file is read as a user file (`util::fs`): a FIFO, a
    /// device or a huge file is refused at once, a BOM accepted.
    pub fn load(dir: Option<&Path>) -> (Keymap, Option<String>) {
        let Some(path) = dir.map(|d| d.join("keymap.yaml")) else {
            return (Keymap::defaults(), None);
        };
        let text = match read_text_capped(&path, limits::CONFIG, "keymap file") {
            Err(ReadError::NotFound { .. }) => return (Keymap::defaults(), None),
            Err(e) => {
                return (
                    Keymap::defaults(),
                    Some(format!("{e}; using the default keys")),
                )
            }
            Ok(text) => text,
        };
        match Keymap::from_user_text(&text) {
            Ok((k, notes)) if notes.is_empty() => (k, None),
            Ok((k, notes)) => (k, Some(format!("{}: {}", path.display(), notes.join("; ")))),
            Err(e) => (
                Keymap::defaults(),
                Some(format!("{}: {e}; using the default keys", path.display())),
            ),
        }
    }

    /// The intent bound to `key` in the first of `contexts` that binds it.
    pub fn lookup(&self, contexts: &[Context], key: &Key) -> Option<Intent> {
        contexts
            .iter()
            .find_map(|c| self.map.get(c).and_then(|m| m.get(key)).copied())
    }

    /// Keys bound to `intent` in `ctx`, plain keys first, e.g. `["i", "enter"]`.
    pub fn keys_for(&self, ctx: Context, intent: Intent) -> Vec<String> {
        let mut keys: Vec<&Key> = self
            .map
            .get(&ctx)
            .map(|m| {
                m.iter()
                    .filter(|(_, i)| **i == intent)
                    .map(|(k, _)| k)
                    .collect()
            })
            .unwrap_or_default();
        keys.sort_by_key(|k| (k.ctrl || k.alt, matches!(k.code, KeyCodeOrd::Named(_)), **k));
        keys.into_iter().map(Key::label).collect()
    }

    /// Help: per context, each intent with its keys, in intent order.
    pub fn help(&self) -> Vec<(Context, Vec<(String, Intent)>)> {
        Context::ALL
            .iter()
            .filter_map(|&c| {
                let rows: Vec<(String, Intent)> = Intent::ALL
                    .iter()
                    .filter_map(|&i| {
                        let keys = self.keys_for(c, i);
                        (!keys.is_empty()).then(|| (keys.join(" "), i))
                    })
                    .collect();
                (!rows.is_empty()).then_some((c, rows))
            })
            .collect()
    }
}
