//! `cargo xtask`: build and test orchestration for the workspace.
//!
//! - `kernel`: builds (or reuses from the cache) the test kernel; prints the bzImage path.
//! - `vm-test`: release-builds the daemon and the VM test binaries, assembles an initramfs,
//!   boots it under QEMU (TCG) and reports every scenario; fails on any failure or crash.
//! - `vm-bench`: the same VM running the latency benchmark.
//! - `vm-smoke`: the same VM checking devices and the bus only (no daemon).
//! - `test`: the one test command: `cargo test --workspace`, `vm-test`, then the image (build,
//!   `vm-boot-test`, `image-repro`) and the Yocto layer's checks.
//! - `image`: the appliance disk image and its outputs (see `image/mod.rs`).
//! - `vm`: boots the image in QEMU on this terminal; `vm-boot-test` flashes it with bmaptool
//!   and checks a boot; `image-repro` builds it again elsewhere and compares.
//! - `demo`: the host demo on the `sim` backend (see `demo/mod.rs`).
//!
//! Exit codes: 0 success, 1 a test or scenario failed, 2 the harness itself failed.

mod cmd;
mod console;
mod demo;
mod error;
mod host;
mod image;
mod initramfs;
mod kernel;
mod qemu;
mod tasks;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(about = "Keywarden build and test tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build the test kernel (cached) and print its path.
    Kernel,
    /// Run the system scenarios in the QEMU VM.
    VmTest(tasks::VmArgs),
    /// Run the latency benchmark in the QEMU VM.
    VmBench(tasks::VmArgs),
    /// Boot the VM and check devices and the bus only.
    VmSmoke(tasks::VmArgs),
    /// Run every test: unit and integration tests, then the VM scenarios.
    Test(tasks::VmArgs),
    /// Build the appliance disk image (and its .bmap, OTA bundle, manifest, SHA256SUMS).
    Image(image::ImageArgs),
    /// Boot the appliance image in QEMU with the serial console on this terminal.
    Vm(image::vm::VmArgs),
    /// Flash the image with bmaptool, boot it twice (power cut between) and check every service.
    VmBootTest(image::vm::BootTestArgs),
    /// The OTA updater on the image in QEMU: refusals, an install over HTTPS from a TUF
    /// repository, the reboot and commit, and power cuts during the next install.
    VmUpdateTest(image::ota::UpdateTestArgs),
    /// Build the image again from a clean clone elsewhere and compare the outputs byte for byte.
    ImageRepro(image::repro::ReproArgs),
    /// Run the stack on the host against the sim backend, on a private bus: at a terminal, the
    /// console and a sim> prompt in tmux; otherwise (or with --scripted) a scripted walkthrough.
    Demo(demo::DemoArgs),
    /// The live demo's sim> prompt (started by `demo` in its tmux session).
    #[command(hide = true)]
    DemoPrompt(demo::prompt::PromptArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().task {
        Task::Kernel => kernel::build().map(|path| println!("{}", path.display())),
        Task::VmTest(args) => tasks::vm(qemu::Mode::Test, &args).map(drop),
        Task::VmBench(args) => tasks::vm(qemu::Mode::Bench, &args).map(drop),
        Task::VmSmoke(args) => tasks::vm(qemu::Mode::Smoke, &args).map(drop),
        Task::Test(args) => tasks::test(&args),
        Task::Image(args) => image::run(&args),
        Task::Vm(args) => image::vm::run(&args),
        Task::VmBootTest(args) => image::vm::boot_test(&args).and_then(tasks::counted),
        Task::VmUpdateTest(args) => image::ota::update_test(&args).and_then(tasks::counted),
        Task::ImageRepro(args) => image::repro::run(&args).and_then(tasks::counted),
        Task::Demo(args) => demo::run(&cmd::workspace_root(), &args),
        Task::DemoPrompt(args) => demo::prompt::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
