//! `keywarden-updated`: see the library documentation.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
