//! Profiling aid: `cargo run --release -p f2b-agent --example scan_file FILE FILTER [ROUNDS]`
//! (FILTER: a stock filter's name or a filter file's path)
//! runs `Filter::scan` over FILE (in memory, 64 KiB chunks cut at line ends, as the bench
//! does) ROUNDS times (default 20) and prints lines/s per round and the failure count. Meant
//! to be run under `perf record` on the logs `F2B_BENCH_KEEP=1 f2b-bench --only filter` keeps.

use std::time::Instant;

use f2b_agent::filter::{Filter, FilterSpec};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(file), Some(name)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: scan_file FILE FILTER [ROUNDS]");
    };
    let rounds: usize = args.get(3).map_or(Ok(20), |r| r.parse())?;
    // A stock filter's name, or a filter file's path.
    let spec = FilterSpec::from_config(&serde_yaml::Value::String(name.clone()))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let filter = Filter::load(&spec, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let text = std::fs::read_to_string(file)?;
    println!("prefilter literals: {:?}", filter.literals());
    let lines = text.bytes().filter(|&b| b == b'\n').count();
    for _ in 0..rounds {
        let t = Instant::now();
        let mut failures = 0u64;
        let b = text.as_bytes();
        let mut base = 0;
        while base < b.len() {
            let mut end = (base + 64 * 1024).min(b.len());
            if end < b.len() {
                end = b[base..end]
                    .iter()
                    .rposition(|&c| c == b'\n')
                    .map_or(end, |p| base + p + 1);
            }
            filter.scan(
                &text[base..end],
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_secs() as i64,
                &mut |f, _| {
                    std::hint::black_box((f.ip, f.time));
                    failures += 1;
                },
            );
            base = end;
        }
        let secs = t.elapsed().as_secs_f64();
        println!("{:.0} lines/s, {failures} failures", lines as f64 / secs);
    }
    Ok(())
}
