//! A tiny PNG line plot, written by hand: an RGB canvas, lines, axes with tick marks, and a
//! zlib stream of stored (uncompressed) deflate blocks, with CRC-32 and Adler-32 computed here.
//!
//! Why not plotters: its bitmap backend needs a font stack (font-kit/freetype) to draw any
//! text, which is a heavy native dependency for a handful of time-series plots. The report
//! carries the titles, axis names, ranges and the colour of each series next to each image.

use std::path::Path;

pub const COLOURS: [[u8; 3]; 6] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [23, 190, 207],
];
pub const COLOUR_NAMES: [&str; 6] = ["blue", "red", "green", "orange", "purple", "cyan"];

const W: usize = 800;
const H: usize = 400;
const M: usize = 40;

struct Canvas {
    px: Vec<u8>,
}

impl Canvas {
    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < W && (y as usize) < H {
            let i = (y as usize * W + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3]) {
        let steps = (x1 - x0).abs().max((y1 - y0).abs()).max(1);
        for i in 0..=steps {
            let x = x0 + (x1 - x0) * i / steps;
            let y = y0 + (y1 - y0) * i / steps;
            for (dx, dy) in [(0, 0), (1, 0), (0, 1)] {
                self.set(x + dx, y + dy, c);
            }
        }
    }
}

/// Draws the series (x from 0 to max x, y from 0 to max y) and writes a PNG; returns the
/// axis ranges used.
pub fn plot(path: &Path, series: &[Vec<(f64, f64)>]) -> std::io::Result<(f64, f64)> {
    let mut c = Canvas {
        px: vec![255u8; W * H * 3],
    };
    let xmax = series
        .iter()
        .flatten()
        .map(|p| p.0)
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let ymax = series
        .iter()
        .flatten()
        .map(|p| p.1)
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let (x0, y0, x1, y1) = (M as i64, (H - M) as i64, (W - M) as i64, M as i64);
    let grey = [120, 120, 120];
    c.line((x0, y0), (x1, y0), grey);
    c.line((x0, y0), (x0, y1), grey);
    for i in 0..=10 {
        let x = x0 + (x1 - x0) * i / 10;
        let y = y0 + (y1 - y0) * i / 10;
        c.line((x, y0), (x, y0 + 6), grey);
        c.line((x0 - 6, y), (x0, y), grey);
        for gx in (x0..x1).step_by(4) {
            c.set(gx, y, [225, 225, 225]);
        }
    }
    for (k, s) in series.iter().enumerate() {
        let col = COLOURS[k % COLOURS.len()];
        let map = |(x, y): (f64, f64)| {
            (
                x0 + ((x / xmax) * (x1 - x0) as f64) as i64,
                y0 + ((y / ymax) * (y1 - y0) as f64) as i64,
            )
        };
        for w in s.windows(2) {
            c.line(map(w[0]), map(w[1]), col);
        }
        if s.len() == 1 {
            let p = map(s[0]);
            c.line(p, (p.0 + 2, p.1), col);
        }
    }
    std::fs::write(path, encode(&c.px))?;
    Ok((xmax, ymax))
}

fn encode(rgb: &[u8]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(H * (W * 3 + 1));
    for row in rgb.chunks(W * 3) {
        raw.push(0); // filter: none
        raw.extend_from_slice(row);
    }
    let mut z = vec![0x78, 0x01];
    let mut blocks = raw.chunks(65_535).peekable();
    while let Some(b) = blocks.next() {
        z.push(u8::from(blocks.peek().is_none()));
        let len = b.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(b);
    }
    z.extend_from_slice(&adler32(&raw).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&(W as u32).to_be_bytes());
    ihdr.extend_from_slice(&(H as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= 65_521;
        b %= 65_521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    #[test]
    fn checksums_match_known_values() {
        assert_eq!(super::crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(super::adler32(b"Wikipedia"), 0x11e6_0398);
    }
}
