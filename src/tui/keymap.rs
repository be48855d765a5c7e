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

pub const DEFAULT_KEYMAP: &str = include_str!("keymap.yaml");

/// Where a binding applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Context {
    Global,
    Prompts,
    Settings,
    Heatmap,
    Drill,
    Edit,
    Dialog,
    Browser,
    Help,
}

impl Context {
    pub const ALL: [Context; 9] = [
        Context::Global,
        Context::Prompts,
        Context::Settings,
        Context::Heatmap,
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
        let mut k = Keymap::defaults();
        apply(&mut k.map, text)?;
        Ok(k)
    }

    /// The defaults merged with `dir/keymap.yaml` if it exists; a warning
    /// names the file and the problem when it cannot be used.
    pub fn load(dir: Option<&Path>) -> (Keymap, Option<String>) {
        let Some(path) = dir.map(|d| d.join("keymap.yaml")) else {
            return (Keymap::defaults(), None);
        };
        match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Keymap::defaults(), None),
            Err(e) => (
                Keymap::defaults(),
                Some(format!("{}: {e}; using the default keys", path.display())),
            ),
            Ok(text) => match Keymap::with_user_text(&text) {
                Ok(k) => (k, None),
                Err(e) => (
                    Keymap::defaults(),
                    Some(format!("{}: {e}; using the default keys", path.display())),
                ),
            },
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
