//! Builds the XDP program (f2b-ebpf) and puts the object at `$OUT_DIR/f2b.bpf.o`, where
//! `f2b_agent::EBPF_OBJECT` embeds it, so the agent ships as one binary.
//!
//! f2b-ebpf is its own cargo workspace that only builds with nightly for bpfel-unknown-none,
//! so this script runs a separate `cargo build` for it, with an environment scrubbed of
//! everything the outer (stable, host-target) cargo sets for build scripts. Its target dir
//! `<workspace>/target/ebpf` is shared by debug and release agent builds: the object is the
//! same, so it is built once.
//!
//! `F2B_EBPF_OBJECT=/path/to/f2b.bpf.o` skips the build and embeds that prebuilt object.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio, exit};

const SETUP_HINT: &str = "building the XDP program failed; run `cargo xtask setup`";

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        eprintln!("error: {SETUP_HINT}");
        exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env_var("OUT_DIR")?);
    let workspace = manifest_dir
        .parent()
        .ok_or("f2b-agent has no parent directory")?
        .to_path_buf();
    let out = out_dir.join("f2b.bpf.o");

    println!("cargo:rerun-if-env-changed=F2B_EBPF_OBJECT");
    if let Some(prebuilt) = env::var_os("F2B_EBPF_OBJECT").filter(|v| !v.is_empty()) {
        let prebuilt = PathBuf::from(prebuilt);
        println!("cargo:rerun-if-changed={}", prebuilt.display());
        if let Err(e) = copy(&prebuilt, &out) {
            // Not a toolchain problem: the hint about `cargo xtask setup` would mislead.
            eprintln!("error: F2B_EBPF_OBJECT is set: {e}");
            exit(1);
        }
        return Ok(());
    }

    let ebpf = workspace.join("f2b-ebpf");
    for p in [
        ebpf.join("src"),
        ebpf.join("Cargo.toml"),
        ebpf.join("Cargo.lock"),
        ebpf.join("rust-toolchain.toml"),
        workspace.join("f2b-common/src"),
        workspace.join("f2b-common/Cargo.toml"),
    ] {
        println!("cargo:rerun-if-changed={}", p.display());
    }

    let target_dir = workspace.join("target").join("ebpf");
    let mut cmd = Command::new(rustup());
    cmd.args(["run", "nightly", "cargo", "build", "--release"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .arg("--manifest-path")
        .arg(ebpf.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&ebpf)
        // Our stdout is read by cargo as `cargo:` directives; the inner build's chatter goes to
        // stderr, which cargo shows when this script fails.
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::inherit());
    scrub_env(&mut cmd);

    let status = cmd
        .status()
        .map_err(|e| format!("cannot run `rustup run nightly cargo build` for f2b-ebpf: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`cargo build` of {} exited with {status}",
            ebpf.display()
        ));
    }
    copy(&target_dir.join("bpfel-unknown-none/release/f2b"), &out)
}

/// Removes what the outer cargo (and rustup, clippy, wrappers) put in our environment and would
/// otherwise steer the nested nightly build: another toolchain, host flags, a target dir.
fn scrub_env(cmd: &mut Command) {
    for var in [
        "RUSTC",
        "RUSTDOC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_LINKER",
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "RUSTUP_TOOLCHAIN",
        "CARGO",
        "CLIPPY_ARGS",
        "CLIPPY_CONF_DIR",
        "TARGET",
        "HOST",
        "OUT_DIR",
        "PROFILE",
        "OPT_LEVEL",
        "DEBUG",
        "NUM_JOBS",
    ] {
        cmd.env_remove(var);
    }
    // Every CARGO_* cargo sets for build scripts (CARGO_TARGET_DIR, CARGO_BUILD_TARGET,
    // CARGO_ENCODED_RUSTFLAGS, CARGO_CFG_*, CARGO_PKG_*, CARGO_MANIFEST_*, CARGO_FEATURE_*,
    // CARGO_PROFILE_*, ...). Kept: where cargo lives and how it reaches the registry, and
    // CARGO_MAKEFLAGS, so the nested build shares the outer jobserver instead of adding its
    // own set of jobs on a busy machine.
    let keep = |k: &str| {
        k == "CARGO_HOME"
            || k == "CARGO_MAKEFLAGS"
            || k.starts_with("CARGO_NET_")
            || k.starts_with("CARGO_HTTP_")
            || k.starts_with("CARGO_REGISTRIES_")
            || k.starts_with("CARGO_REGISTRY_")
    };
    for (k, _) in env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        if (k.starts_with("CARGO_") && !keep(k)) || k.starts_with("__CARGO") {
            cmd.env_remove(k);
        }
    }
}

/// rustup from PATH, else next to cargo's home (a build started by an IDE may lack PATH).
fn rustup() -> OsString {
    let in_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .map(|h| h.join("bin/rustup"));
    match in_home {
        Some(p) if p.exists() && which_rustup().is_none() => p.into_os_string(),
        _ => OsString::from("rustup"),
    }
}

fn which_rustup() -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|d| d.join("rustup"))
        .find(|p| p.exists())
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
}

fn env_var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("{name} is not set (build.rs runs under cargo)"))
}
