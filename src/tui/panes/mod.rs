//! One file per pane. Each pane is a short-lived widget built every frame
//! from references to the state and the theme; rendering never mutates.

pub mod circuit;
mod circuit_drill;
mod circuit_graph;
pub mod dataset;
pub mod dialogs;
pub mod drill;
pub mod heatmap;
pub mod help;
pub mod prompts;
pub mod resume;
pub mod settings;
pub mod status;

pub use circuit::CircuitPane;
pub use dataset::DatasetPane;
pub use dialogs::DialogPopup;
pub use drill::DrillPane;
pub use heatmap::HeatmapPane;
pub use help::HelpPopup;
pub use prompts::PromptsPane;
pub use settings::SettingsPane;
pub use status::StatusBar;
