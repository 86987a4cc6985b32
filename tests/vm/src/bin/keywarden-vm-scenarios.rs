//! `keywarden-vm-scenarios [--smoke]`: runs inside the test VM as root (started by `/init`),
//! builds the cabinet and runs the system scenarios, reporting `KWTEST` lines on the console.
//! `--smoke` only checks devices and the bus, without the daemon.
//! Exit codes: 0 all passed, 1 something failed.

fn main() -> std::process::ExitCode {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            keywarden_vmtest::report::line(&format!("KWTEST FAIL runtime: {e}"));
            keywarden_vmtest::report::line("KWTEST DONE 0 1");
            return std::process::ExitCode::FAILURE;
        }
    };
    let passed = runtime.block_on(async {
        if smoke {
            keywarden_vmtest::scenarios::smoke().await
        } else {
            keywarden_vmtest::scenarios::run_all().await
        }
    });
    if passed {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
