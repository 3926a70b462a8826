//! Unit tests on real files in temp directories.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::{LogSource, PollStats, SourceOptions, StartAt};
use super::waiter::{Backend, Waiter};
use crate::store::FilePos;

fn append(path: &Path, data: &[u8]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(data).unwrap();
}

fn opts(start_at: StartAt) -> SourceOptions {
    SourceOptions {
        start_at,
        rotate_wait: Duration::ZERO,
        ..SourceOptions::default()
    }
}

fn source(paths: &[&Path], start_at: StartAt, saved: Vec<(String, FilePos)>) -> LogSource {
    let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    LogSource::new(&paths, opts(start_at), saved).unwrap()
}

fn lines(src: &mut LogSource) -> (Vec<String>, PollStats) {
    let mut out = Vec::new();
    let st = src.poll(&mut |_, l| out.push(l.to_string())).unwrap();
    (out, st)
}

fn saved(src: &LogSource) -> Vec<(String, FilePos)> {
    src.checkpoints()
        .into_iter()
        .filter_map(|(p, pos)| pos.map(|pos| (p, pos)))
        .collect()
}

#[test]
fn tail_head_and_partial_lines() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.log");
    append(&p, b"old 1\nold 2\nhalf");
    let mut tail = source(&[&p], StartAt::Tail, vec![]);
    let mut head = source(&[&p], StartAt::Head, vec![]);
    assert_eq!(lines(&mut head).0, ["old 1", "old 2"]);
    // Tail starts after the last newline: the line being written is read whole.
    assert!(lines(&mut tail).0.is_empty());
    append(&p, b" done\nnext par");
    assert_eq!(lines(&mut tail).0, ["half done"]);
    assert_eq!(lines(&mut head).0, ["half done"]);
    assert_eq!(
        head.checkpoints()[0].1.unwrap().offset,
        "old 1\nold 2\nhalf done\n".len() as u64
    );
    append(&p, b"t\r\n");
    assert_eq!(lines(&mut tail).0, ["next part"]);
}

#[test]
fn long_lines_are_cut_counted_and_never_buffered() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.log");
    fs::write(&p, b"").unwrap();
    let o = SourceOptions {
        start_at: StartAt::Head,
        max_line: 10,
        read_buffer: 7,
        rotate_wait: Duration::ZERO,
    };
    let mut src = LogSource::new(&[p.display().to_string()], o, vec![]).unwrap();
    append(&p, b"short\n0123456789ABCDEF");
    let (l, st) = lines(&mut src);
    assert_eq!(l, ["short"]);
    assert_eq!(st.truncated_lines, 0);
    append(&p, &[b'x'; 100_000]);
    assert!(lines(&mut src).0.is_empty());
    append(&p, b"\nexactly10!\n");
    let (l, st) = lines(&mut src);
    assert_eq!(l, ["0123456789", "exactly10!"]);
    assert_eq!(st.truncated_lines, 1);
    // A cut never ends in half a character.
    append(&p, "123456789é and more\n".as_bytes());
    assert_eq!(lines(&mut src).0, ["123456789"]);
}

#[test]
fn long_line_inside_one_chunk() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.log");
    fs::write(&p, b"").unwrap();
    let o = SourceOptions {
        start_at: StartAt::Head,
        max_line: 4,
        ..opts(StartAt::Head)
    };
    let mut src = LogSource::new(&[p.display().to_string()], o, vec![]).unwrap();
    append(&p, b"abcdefgh\nab\n");
    let (l, st) = lines(&mut src);
    assert_eq!(l, ["abcd", "ab"]);
    assert_eq!(st.truncated_lines, 1);
}

#[test]
fn invalid_utf8_is_read_lossily() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.log");
    fs::write(&p, b"").unwrap();
    let mut src = source(&[&p], StartAt::Head, vec![]);
    append(&p, b"user \xff\xfe from 192.0.2.1\nok \xc3\xa9\n");
    assert_eq!(
        lines(&mut src).0,
        ["user \u{fffd}\u{fffd} from 192.0.2.1", "ok é"]
    );
}

#[test]
fn rename_and_create_drains_the_old_file_first() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.log");
    append(&p, b"1\n");
    let mut src = source(&[&p], StartAt::Head, vec![]);
    assert_eq!(lines(&mut src).0, ["1"]);
    append(&p, b"2\n3");
    fs::rename(&p, d.path().join("a.log.1")).unwrap();
    append(&p, b"4\n");
    let (l, st) = lines(&mut src);
    assert_eq!(l, ["2", "4"]);
    assert_eq!(st.rotations, 1);
    // The unfinished "3" of the old file stays unfinished; the new file is followed.
    append(&p, b"5\n");
    assert_eq!(lines(&mut src).0, ["5"]);
}

#[test]
fn rotated_file_is_followed_for_rotate_wait() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.log");
    append(&p, b"");
    let o = SourceOptions {
        rotate_wait: Duration::from_secs(60),
        ..opts(StartAt::Head)
    };
    let mut src = LogSource::new(&[p.display().to_string()], o, vec![]).unwrap();
    let old = d.path().join("a.log.1");
    fs::rename(&p, &old).unwrap();
    append(&p, b"new 1\n");
    assert_eq!(lines(&mut src).0, ["new 1"]);
    // A writer that has not reopened yet still writes to the renamed file.
    append(&old, b"late\n");
    let (l, st) = lines(&mut src);
    assert_eq!(l, ["late"]);
    assert_eq!(st.files, 2);
}

#[test]
fn copytruncate_and_truncate_restart_at_zero() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.log");
    append(&p, b"a 1\na 2\n");
    let mut src = source(&[&p], StartAt::Head, vec![]);
    assert_eq!(lines(&mut src).0.len(), 2);
    // copytruncate: copy away, truncate in place, the writer goes on at the start.
    fs::copy(&p, d.path().join("a.log.1")).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&p, b"b 1\n");
    let (l, st) = lines(&mut src);
    assert_eq!(l, ["b 1"]);
    assert_eq!(st.truncations, 1);
    assert_eq!(st.rotations, 0);
    // Truncated and rewritten past the old offset before we looked: the first bytes differ.
    fs::write(&p, b"c 1 is a longer line than before\n").unwrap();
    let (l, st) = lines(&mut src);
    assert_eq!(l, ["c 1 is a longer line than before"]);
    assert_eq!(st.truncations, 1);
}

#[test]
fn delete_and_recreate_drains_by_descriptor() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.log");
    append(&p, b"1\n");
    let mut src = source(&[&p], StartAt::Head, vec![]);
    assert_eq!(lines(&mut src).0, ["1"]);
    append(&p, b"2\n");
    fs::remove_file(&p).unwrap();
    let (l, st) = lines(&mut src);
    assert_eq!(l, ["2"]);
    assert_eq!(st.rotations, 1);
    // A literal path that is gone keeps a marker, so its next file is read from the start.
    let cp = src.checkpoints();
    assert_eq!(cp.len(), 1);
    assert_eq!(cp[0].1.unwrap().ino, 0);
    append(&p, b"3\n");
    assert_eq!(lines(&mut src).0, ["3"]);
}

#[test]
fn glob_picks_up_new_files_and_forgets_gone_ones() {
    let d = tempfile::tempdir().unwrap();
    let pat = format!("{}/logs/*.log", d.path().display());
    let mut src = LogSource::new(std::slice::from_ref(&pat), opts(StartAt::Tail), vec![]).unwrap();
    // The directory does not exist yet: its parent is watched.
    assert_eq!(src.watch_dirs(), [d.path().to_path_buf()]);
    fs::create_dir(d.path().join("logs")).unwrap();
    append(&d.path().join("logs/x.log"), b"x1\n");
    append(&d.path().join("logs/x.txt"), b"no\n");
    let mut got = Vec::new();
    src.poll(&mut |p, l| got.push((p.to_string(), l.to_string())))
        .unwrap();
    // A file that appears after the start is read from its beginning.
    assert_eq!(
        got,
        [(format!("{}/logs/x.log", d.path().display()), "x1".into())]
    );
    assert!(src.watch_dirs().contains(&d.path().join("logs")));
    append(&d.path().join("logs/y.log"), b"y1\n");
    assert_eq!(lines(&mut src).0, ["y1"]);
    fs::remove_file(d.path().join("logs/x.log")).unwrap();
    lines(&mut src);
    let cp = src.checkpoints();
    assert!(cp.contains(&(pat.clone(), Some(super::file::MARKER))));
    assert!(cp.contains(&(format!("{}/logs/x.log", d.path().display()), None)));
    lines(&mut src);
    assert!(!src.checkpoints().iter().any(|(p, _)| p.ends_with("x.log")));
}

#[test]
fn glob_over_rotated_names_does_not_read_twice() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.log");
    append(&p, b"1\n");
    let pat = format!("{}/a.log*", d.path().display());
    let mut src = LogSource::new(&[pat], opts(StartAt::Head), vec![]).unwrap();
    assert_eq!(lines(&mut src).0, ["1"]);
    append(&p, b"2\n");
    fs::rename(&p, d.path().join("a.log.1")).unwrap();
    append(&p, b"3\n");
    let mut l = lines(&mut src).0;
    l.sort();
    assert_eq!(l, ["2", "3"]);
}

#[test]
fn resume_from_checkpoint_reads_what_was_written_while_down() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.log");
    append(&p, b"1\n");
    let mut src = source(&[&p], StartAt::Tail, vec![]);
    append(&p, b"2\n3");
    assert_eq!(lines(&mut src).0, ["2"]);
    let cp = saved(&src);
    drop(src);
    append(&p, b"\n4\n");
    // Saved positions win over StartAt::Tail.
    let mut src = source(&[&p], StartAt::Tail, cp);
    assert_eq!(lines(&mut src).0, ["3", "4"]);
    let cp = saved(&src);
    drop(src);
    // Rotated (renamed) while down: the old file is found by inode and drained first.
    append(&p, b"5\n");
    fs::rename(&p, d.path().join("a.log.1")).unwrap();
    append(&p, b"6\n");
    let mut src = source(&[&p], StartAt::Tail, cp);
    assert_eq!(lines(&mut src).0, ["5", "6"]);
    let cp = saved(&src);
    drop(src);
    // Deleted while down: the new file at the path is read from its start.
    fs::remove_file(&p).unwrap();
    append(&p, b"7\n");
    let mut src = source(&[&p], StartAt::Tail, cp);
    assert_eq!(lines(&mut src).0, ["7"]);
    let cp = saved(&src);
    drop(src);
    // Truncated while down, then written again: read from the start.
    fs::write(&p, b"").unwrap();
    append(&p, b"8\n");
    let mut src = source(&[&p], StartAt::Tail, cp);
    assert_eq!(lines(&mut src).0, ["8"]);
    let cp = saved(&src);
    drop(src);
    // Shorter than the saved offset but the same first bytes: a truncation, counted.
    fs::write(&p, b"").unwrap();
    let mut src = source(&[&p], StartAt::Tail, cp.clone());
    let (l, _) = lines(&mut src);
    assert!(l.is_empty());
    drop(src);
    let big: String = (0..200).map(|i| format!("line {i:04}\n")).collect();
    fs::write(&p, &big).unwrap();
    let mut src = source(&[&p], StartAt::Head, vec![]);
    assert_eq!(lines(&mut src).0.len(), 200);
    let cp = saved(&src);
    drop(src);
    OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(1100)
        .unwrap();
    let mut src = source(&[&p], StartAt::Tail, cp);
    let (l, st) = lines(&mut src);
    assert_eq!(st.truncations, 1);
    assert_eq!(l.len(), 110);
}

#[test]
fn missing_file_at_start_then_restart_reads_from_start() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.log");
    let src = source(&[&p], StartAt::Tail, vec![]);
    let cp = saved(&src);
    assert_eq!(cp.len(), 1, "a marker for the missing path");
    drop(src);
    append(&p, b"while down\n");
    let mut src = source(&[&p], StartAt::Tail, cp);
    assert_eq!(lines(&mut src).0, ["while down"]);
}

#[test]
fn inode_reuse_with_other_content_is_a_new_file() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.log");
    append(&p, b"first file line 1\nfirst file line 2\n");
    let mut src = source(&[&p], StartAt::Head, vec![]);
    assert_eq!(lines(&mut src).0.len(), 2);
    let cp = saved(&src);
    drop(src);
    // Same device and inode, other first bytes, and longer than the saved offset: only the
    // fingerprint tells it is not the file that was saved.
    fs::write(
        &p,
        b"second file, a different first line that is longer\nanother line\n",
    )
    .unwrap();
    let mut src = source(&[&p], StartAt::Tail, cp);
    assert_eq!(
        lines(&mut src).0,
        [
            "second file, a different first line that is longer",
            "another line"
        ]
    );
}

#[test]
fn fingerprint_grows_with_the_file() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.log");
    append(&p, b"x\n");
    let mut src = source(&[&p], StartAt::Head, vec![]);
    lines(&mut src);
    assert_eq!(src.checkpoints()[0].1.unwrap().fingerprint_len, 2);
    append(&p, &[b'y'; 3000]);
    lines(&mut src);
    let pos = src.checkpoints()[0].1.unwrap();
    assert_eq!(pos.fingerprint_len, 1024);
    assert_eq!(pos.offset, 2);
}

#[test]
fn saved_positions_of_removed_logpaths_are_forgotten() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.log");
    let stale = FilePos {
        dev: 1,
        ino: 2,
        fingerprint: 3,
        fingerprint_len: 4,
        offset: 5,
    };
    let src = source(&[&p], StartAt::Tail, vec![("/old/path.log".into(), stale)]);
    assert!(src.checkpoints().contains(&("/old/path.log".into(), None)));
}

#[test]
fn waiter_inotify_sees_creation_and_writes() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.log");
    let mut w = Waiter::new(Backend::Inotify, Duration::from_secs(1)).unwrap();
    let src = source(&[&p], StartAt::Tail, vec![]);
    w.watch(&src.watch_dirs()).unwrap();
    assert!(!w.wait(Duration::from_millis(20)).unwrap());
    append(&p, b"x\n");
    assert!(w.wait(Duration::from_secs(5)).unwrap());
    assert!(!w.wait(Duration::from_millis(20)).unwrap());
    append(&p, b"y\n");
    assert!(w.wait(Duration::from_secs(5)).unwrap());
    fs::rename(&p, d.path().join("a.log.1")).unwrap();
    assert!(w.wait(Duration::from_secs(5)).unwrap());
}

#[test]
fn waiter_ignores_writes_to_other_files_in_the_log_directory() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("auth.log");
    let other = d.path().join("syslog");
    append(&p, b"");
    append(&other, b"");
    let mut w = Waiter::new(Backend::Inotify, Duration::from_secs(1)).unwrap();
    let mut src = source(&[&p], StartAt::Tail, vec![]);
    lines(&mut src);
    w.watch(&src.watch_dirs()).unwrap();
    w.wake_on(src.write_names());
    // Writes to another file of the directory: no wake-up.
    append(&other, b"noise\n");
    assert!(!w.wait(Duration::from_millis(50)).unwrap());
    // A write to the followed file wakes, also right after more noise.
    append(&other, b"noise\n");
    append(&p, b"x\n");
    assert!(w.wait(Duration::from_secs(5)).unwrap());
    // A new file (a glob might match it) and a rename always wake.
    append(&d.path().join("new.log"), b"");
    assert!(w.wait(Duration::from_secs(5)).unwrap());
    fs::rename(&other, d.path().join("syslog.1")).unwrap();
    assert!(w.wait(Duration::from_secs(5)).unwrap());
    // Without a name set (a rotated file still being read), every write wakes.
    w.wake_on(None);
    append(&d.path().join("syslog.1"), b"noise\n");
    assert!(w.wait(Duration::from_secs(5)).unwrap());
}

#[test]
fn only_writes_to_followed_files_let_the_next_poll_skip_the_paths() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("auth.log");
    append(&p, b"");
    let mut w = Waiter::new(Backend::Inotify, Duration::from_secs(1)).unwrap();
    let mut src = source(&[&p], StartAt::Head, vec![]);
    lines(&mut src);
    w.watch(&src.watch_dirs()).unwrap();
    w.wake_on(src.write_names());
    // The watch was just set up: the paths have not been looked at since.
    assert!(!w.only_writes());
    // Appends to the followed file, also with noise in the directory's other files.
    append(&d.path().join("syslog"), b"noise\n");
    assert!(w.wait(Duration::from_secs(5)).unwrap());
    assert!(
        !w.only_writes(),
        "a new file in the directory is not a write"
    );
    append(&p, b"1\n");
    append(&p, b"2\n");
    assert!(w.wait(Duration::from_secs(5)).unwrap());
    assert!(w.only_writes());
    src.paths_unchanged();
    assert_eq!(lines(&mut src).0, ["1", "2"]);
    // Rotation: a rename and a creation are not writes; the poll finds the new file.
    append(&p, b"3\n");
    fs::rename(&p, d.path().join("auth.log.1")).unwrap();
    append(&p, b"4\n");
    assert!(w.wait(Duration::from_secs(5)).unwrap());
    assert!(!w.only_writes());
    let (l, st) = lines(&mut src);
    assert_eq!(
        (l, st.rotations),
        (vec!["3".to_string(), "4".to_string()], 1)
    );
    w.watch(&src.watch_dirs()).unwrap();
    w.wake_on(src.write_names());
    append(&p, b"5\n");
    assert!(w.wait(Duration::from_secs(5)).unwrap());
    assert!(
        w.only_writes(),
        "the new file at the path is followed by name"
    );
    // While a rotated-away file is still read (no name set) every event matters, and none
    // is "only writes".
    w.wake_on(None);
    append(&p, b"6\n");
    assert!(w.wait(Duration::from_secs(5)).unwrap());
    assert!(!w.only_writes());
    // A timeout: the safety-net poll looks at everything.
    assert!(!w.wait(Duration::from_millis(20)).unwrap());
    assert!(!w.only_writes());
    // Polling never skips.
    let mut poll = Waiter::new(Backend::Polling, Duration::from_millis(10)).unwrap();
    assert!(poll.wait(Duration::from_secs(1)).unwrap());
    assert!(!poll.only_writes());
}

#[test]
fn a_poll_told_the_paths_are_unchanged_does_not_look_for_new_files() {
    let d = tempfile::tempdir().unwrap();
    let glob = d.path().join("*.log");
    append(&d.path().join("a.log"), b"a\n");
    let mut src = source(&[&glob], StartAt::Head, vec![]);
    assert_eq!(lines(&mut src).0, ["a"]);
    append(&d.path().join("b.log"), b"b\n");
    append(&d.path().join("a.log"), b"a2\n");
    // Skipped discovery: the followed file is read, the new one not yet...
    src.paths_unchanged();
    assert_eq!(lines(&mut src).0, ["a2"]);
    // ...until a poll looks at the paths again (once: the skip does not stick).
    assert_eq!(lines(&mut src).0, ["b"]);
}

#[test]
fn waiter_watches_nearest_existing_dir_until_the_log_dir_exists() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("sub/a.log");
    let mut w = Waiter::new(Backend::Auto, Duration::from_secs(1)).unwrap();
    let mut src = source(&[&p], StartAt::Tail, vec![]);
    w.watch(&src.watch_dirs()).unwrap();
    assert_eq!(w.dirs(), [d.path().to_path_buf()]);
    fs::create_dir(d.path().join("sub")).unwrap();
    assert!(w.wait(Duration::from_secs(5)).unwrap());
    lines(&mut src);
    w.watch(&src.watch_dirs()).unwrap();
    assert_eq!(w.dirs(), [d.path().join("sub")]);
    append(&p, b"hello\n");
    assert!(w.wait(Duration::from_secs(5)).unwrap());
    assert_eq!(lines(&mut src).0, ["hello"]);
}

#[test]
fn waiter_polling_ticks_on_its_interval() {
    let mut w = Waiter::new(Backend::Polling, Duration::from_millis(30)).unwrap();
    assert_eq!(w.backend(), Backend::Polling);
    w.watch(&[PathBuf::from("/nonexistent")]).unwrap();
    assert!(w.wait(Duration::from_secs(1)).unwrap());
    assert!(!w.wait(Duration::from_millis(5)).unwrap());
    let t = std::time::Instant::now();
    assert!(w.wait(Duration::from_secs(1)).unwrap());
    assert!(t.elapsed() < Duration::from_millis(500));
    assert_eq!("polling".parse::<Backend>(), Ok(Backend::Polling));
    assert!("epoll".parse::<Backend>().is_err());
}

mod journal {
    use std::borrow::Cow;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant, UNIX_EPOCH};

    use super::super::StartAt;
    use super::super::journal::{
        JournalConfig, JournalError, JournalSource, parse_entry, parse_matches,
    };

    #[test]
    fn parses_entries() {
        let e = parse_entry(
            br#"{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1700000000123456","MESSAGE":"Failed password for root from 192.0.2.7 port 22 ssh2","_PID":"42"}"#,
        )
        .unwrap();
        assert_eq!(e.cursor, "s=1;i=2");
        assert_eq!(
            e.time,
            UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456)
        );
        assert_eq!(
            e.message.as_deref(),
            Some("Failed password for root from 192.0.2.7 port 22 ssh2")
        );
        assert!(matches!(e.message, Some(Cow::Borrowed(_))));
        // Not UTF-8 in the journal: an array of bytes.
        let e =
            parse_entry(br#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1","MESSAGE":[104,105,255]}"#)
                .unwrap();
        assert_eq!(e.message.as_deref(), Some("hi\u{fffd}"));
        // Too big for journalctl (null) or absent.
        let e =
            parse_entry(br#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1","MESSAGE":null}"#).unwrap();
        assert_eq!(e.message, None);
        let e = parse_entry(br#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1"}"#).unwrap();
        assert_eq!(e.message, None);
        assert!(parse_entry(br#"{"MESSAGE":"no cursor"}"#).is_err());
        assert!(parse_entry(br#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":"x"}"#).is_err());
        assert!(parse_entry(b"not json").is_err());
    }

    #[test]
    fn matches_cannot_become_options() {
        assert_eq!(
            parse_matches("_SYSTEMD_UNIT=sshd.service + _COMM=sshd").unwrap(),
            ["_SYSTEMD_UNIT=sshd.service", "+", "_COMM=sshd"]
        );
        for bad in [
            "--file=/etc/shadow",
            "-n",
            "unit=sshd",
            "=x",
            "1X=y",
            "SYSLOG_IDENTIFIER",
        ] {
            assert_eq!(
                parse_matches(bad),
                Err(JournalError::BadMatch(bad.to_string()))
            );
        }
        assert_eq!(parse_matches("  "), Err(JournalError::Empty));
        assert_eq!(parse_matches("+"), Err(JournalError::Empty));
    }

    #[test]
    fn arguments_follow_cursor_and_start() {
        let mut cfg = JournalConfig::new(vec!["_SYSTEMD_UNIT=sshd.service".into()]);
        let args = |s: &JournalSource| -> Vec<String> {
            s.args()
                .into_iter()
                .map(|a| a.into_string().unwrap())
                .collect()
        };
        let tail = JournalSource::new(cfg.clone(), None);
        assert_eq!(
            args(&tail),
            [
                "-o",
                "json",
                "-f",
                "-q",
                "--lines=0",
                "_SYSTEMD_UNIT=sshd.service"
            ]
        );
        cfg.start_at = StartAt::Head;
        let head = JournalSource::new(cfg.clone(), None);
        assert!(args(&head).contains(&"--no-tail".to_string()));
        let resumed = JournalSource::new(cfg, Some("s=abc;i=9".into()));
        let a = args(&resumed);
        assert!(a.contains(&"--after-cursor=s=abc;i=9".to_string()));
        assert!(a.contains(&"--no-tail".to_string()));
    }

    /// journald is not running on the build machine, so a script stands in for journalctl:
    /// it records its arguments and prints what `journalctl -o json` prints, then exits, which
    /// also exercises the restart with the last cursor.
    #[test]
    fn follows_a_journalctl_child_and_restarts_it_with_the_cursor() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("args");
        let script = d.path().join("journalctl");
        let long = "x".repeat(100);
        std::fs::write(
            &script,
            format!(
                r#"#!/bin/sh
echo "$@" >> {log}
n=$(wc -l < {log})
if [ "$n" = 1 ]; then
  printf '%s\n' '{{"__CURSOR":"c1","__REALTIME_TIMESTAMP":"1000000","MESSAGE":"first"}}'
  printf '%s' '{{"__CURSOR":"c2","__REALTIME_TIMESTAMP":"2000000","_PID":"1"'
  sleep 0.1
  printf '%s\n' '}}'
  printf '%s\n' '{{"__CURSOR":"c3","__REALTIME_TIMESTAMP":"3000000","MESSAGE":"{long}"}}'
  printf '%s\n' 'garbage'
else
  printf '%s\n' '{{"__CURSOR":"c4","__REALTIME_TIMESTAMP":"4000000","MESSAGE":"after restart"}}'
  sleep 30
fi
"#,
                log = log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut cfg = JournalConfig::new(vec!["_SYSTEMD_UNIT=sshd.service".into()]);
        cfg.journalctl = script;
        cfg.max_line = 13;
        let mut src = JournalSource::new(cfg, None);
        let mut got = Vec::new();
        let (mut truncated, mut bad) = (0, 0);
        let start = Instant::now();
        while got.len() < 3 && start.elapsed() < Duration::from_secs(20) {
            let st = src
                .poll(Duration::from_millis(200), &mut |m, t| {
                    got.push((m.to_string(), t))
                })
                .unwrap();
            truncated += st.truncated_lines;
            bad += st.bad_entries;
        }
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(
            got,
            [
                ("first".to_string(), at(1)),
                ("x".repeat(13), at(3)),
                ("after restart".to_string(), at(4)),
            ]
        );
        assert_eq!(truncated, 1);
        assert_eq!(bad, 1);
        assert_eq!(src.cursor(), Some("c4"));
        let args = std::fs::read_to_string(&log).unwrap();
        let runs: Vec<&str> = args.lines().collect();
        assert_eq!(runs.len(), 2);
        assert!(runs[0].contains("--lines=0"), "{}", runs[0]);
        assert!(
            runs[1].contains("--no-tail --after-cursor=c3 _SYSTEMD_UNIT=sshd.service"),
            "{}",
            runs[1]
        );
        // Dropping the source ends the child (it would otherwise sleep 30 s).
        drop(src);
    }

    #[test]
    fn missing_journalctl_is_an_error_and_retried() {
        let mut cfg = JournalConfig::new(vec!["_COMM=sshd".into()]);
        cfg.journalctl = "/nonexistent/journalctl".into();
        let mut src = JournalSource::new(cfg, None);
        let e = src.poll(Duration::ZERO, &mut |_, _| {}).unwrap_err();
        assert!(e.to_string().contains("cannot start"), "{e}");
        // Backoff: an immediate second poll does not spin on spawning.
        assert!(src.poll(Duration::ZERO, &mut |_, _| {}).unwrap().spawns == 0);
    }
}

/// Against the real journal, when journald runs here (it does not on the build machine by
/// default: the test then says so and passes without checking anything).
#[test]
fn real_journald_cursor_round_trip() {
    use std::process::{Command, Stdio};
    use std::time::Instant;

    use super::journal::{JournalConfig, JournalSource};

    // A socket file left behind by a journald that exited refuses connections.
    let listening = std::os::unix::net::UnixDatagram::unbound()
        .and_then(|s| s.connect("/run/systemd/journal/socket"))
        .is_ok();
    if !listening
        || Command::new("systemd-cat")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
    {
        eprintln!("skipped: journald is not running here");
        return;
    }
    let id = format!("f2b-test-{}", std::process::id());
    let log = |msg: &str| {
        let mut c = Command::new("systemd-cat")
            .args(["-t", &id])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(msg.as_bytes()).unwrap();
        assert!(c.wait().unwrap().success());
    };
    let read_until = |src: &mut JournalSource, want: usize| {
        let mut got = Vec::new();
        let t = Instant::now();
        while got.len() < want && t.elapsed() < Duration::from_secs(10) {
            src.poll(Duration::from_millis(200), &mut |m, _| {
                got.push(m.to_string())
            })
            .unwrap();
        }
        got
    };
    log("one\n");
    let mut cfg = JournalConfig::new(vec![format!("SYSLOG_IDENTIFIER={id}")]);
    cfg.start_at = StartAt::Head;
    let mut src = JournalSource::new(cfg.clone(), None);
    assert_eq!(read_until(&mut src, 1), ["one"]);
    log("two\n");
    assert_eq!(read_until(&mut src, 1), ["two"]);
    let cursor = src.cursor().map(str::to_string);
    drop(src);
    log("three while down\n");
    let mut src = JournalSource::new(cfg, cursor);
    // Nothing read twice, nothing written while down missed.
    assert_eq!(read_until(&mut src, 1), ["three while down"]);
    let mut more = Vec::new();
    src.poll(Duration::from_millis(500), &mut |m, _| {
        more.push(m.to_string())
    })
    .unwrap();
    assert!(more.is_empty(), "{more:?}");
}
