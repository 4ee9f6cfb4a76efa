//! Progress bars: on stderr, only when it is a terminal and the run is long enough to be
//! worth one, so pipes and logs never see them.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `total` units (`bytes` or items), or `None` when it should not be drawn.
pub fn bar(total: u64, worth_it: bool, bytes: bool) -> Option<ProgressBar> {
    if !worth_it || !std::io::stderr().is_terminal() {
        return None;
    }
    let template = if bytes {
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {wide_msg}"
    } else {
        "{bar:40} {pos}/{len} {per_sec} {wide_msg}"
    };
    let style = ProgressStyle::with_template(template).expect("a valid template");
    Some(ProgressBar::new(total).with_style(style))
}
