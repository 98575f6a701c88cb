//! The commands: each one's run (observe, plan, execute), its outcome and
//! how that outcome is rendered as JSON and as text.

pub mod check;
pub mod disable;
pub mod enable;
pub mod grant;
pub mod shift;
