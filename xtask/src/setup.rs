//! `cargo xtask setup`: check, then install only what is missing.

use std::process::Command;

use anyhow::{Result, bail};

use crate::run_cmd;

/// Debian packages the build and the tests need: LLVM for bpf-linker, `ip` for namespaces,
/// `ping` for the ICMP traffic of the tests and the demo.
const APT_PACKAGES: &[&str] = &["llvm-22-dev", "iproute2", "iputils-ping"];
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn apt_missing() -> Vec<&'static str> {
    APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect()
}

fn bpf_linker_ok() -> bool {
    output(Command::new("bpf-linker").arg("--version"))
        .is_some_and(|v| v.split_whitespace().any(|w| w == BPF_LINKER_VERSION))
}

fn installed_components(toolchain: &str) -> Option<String> {
    output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        toolchain,
        "--installed",
    ]))
}

fn has_component(list: &str, name: &str) -> bool {
    list.lines()
        .any(|l| l == name || l.starts_with(&format!("{name}-")))
}

pub fn run() -> Result<()> {
    let mut done = Vec::new();

    let missing = apt_missing();
    if !missing.is_empty() {
        let cmd = format!(
            "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y {}",
            missing.join(" ")
        );
        if !is_root() {
            bail!("missing Debian packages {missing:?}; as root run:\n  {cmd}");
        }
        println!("setup: installing {}", missing.join(" "));
        run_cmd(Command::new("apt-get").arg("update"))?;
        run_cmd(
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y"])
                .args(&missing),
        )?;
        done.push(format!("apt: {}", missing.join(" ")));
    }

    let Some(nightly) = installed_components("nightly") else {
        bail!(
            "no `nightly` Rust toolchain (the XDP program needs it; see shared TOOLCHAIN notes); \
             install one with `rustup toolchain install nightly`"
        );
    };
    let want: Vec<&str> = ["rust-src", "clippy", "rustfmt"]
        .into_iter()
        .filter(|c| !has_component(&nightly, c))
        .collect();
    if !want.is_empty() {
        println!(
            "setup: rustup component add {} --toolchain nightly",
            want.join(" ")
        );
        run_cmd(
            Command::new("rustup")
                .args(["component", "add"])
                .args(&want)
                .args(["--toolchain", "nightly"]),
        )?;
        done.push(format!("nightly components: {}", want.join(" ")));
    }
    if let Some(stable) = installed_components("stable") {
        let want: Vec<&str> = ["clippy", "rustfmt"]
            .into_iter()
            .filter(|c| !has_component(&stable, c))
            .collect();
        if !want.is_empty() {
            println!(
                "setup: rustup component add {} --toolchain stable",
                want.join(" ")
            );
            run_cmd(
                Command::new("rustup")
                    .args(["component", "add"])
                    .args(&want)
                    .args(["--toolchain", "stable"]),
            )?;
            done.push(format!("stable components: {}", want.join(" ")));
        }
    }

    if !bpf_linker_ok() {
        println!(
            "setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about a minute)"
        );
        run_cmd(
            Command::new("cargo")
                .env("LLVM_PREFIX", LLVM_PREFIX)
                // The outer `cargo xtask` may have pinned a toolchain or target dir for itself.
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("RUSTFLAGS")
                .args([
                    "install",
                    "bpf-linker",
                    "--locked",
                    "--version",
                    BPF_LINKER_VERSION,
                    "--no-default-features",
                    "--features",
                    "llvm-22",
                    "--force",
                ]),
        )?;
        if !bpf_linker_ok() {
            bail!(
                "bpf-linker {BPF_LINKER_VERSION} was installed but `bpf-linker --version` does not report it (is ~/.cargo/bin on PATH?)"
            );
        }
        done.push(format!("bpf-linker {BPF_LINKER_VERSION}"));
    }

    if done.is_empty() {
        println!(
            "setup: everything present (apt: {}, bpf-linker {BPF_LINKER_VERSION}, nightly rust-src)",
            APT_PACKAGES.join(" ")
        );
    } else {
        println!("setup: installed {}", done.join("; "));
    }
    Ok(())
}
