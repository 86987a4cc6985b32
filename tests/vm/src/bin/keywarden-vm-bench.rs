//! `keywarden-vm-bench`: runs inside the test VM as root (started by `/init`), builds the
//! cabinet and prints `KWBENCH` latency lines on the console, then `KWBENCH DONE`.
//! Exit codes: 0 measured, 1 failed (a `KWBENCH FAIL <reason>` line says why).

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            keywarden_vmtest::report::line(&format!("KWBENCH FAIL runtime: {e}"));
            return std::process::ExitCode::FAILURE;
        }
    };
    if runtime.block_on(keywarden_vmtest::bench::run()) {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
