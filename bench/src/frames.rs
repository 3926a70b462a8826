//! Frames and address sets. Frames only ever carry 198.18.0.0/15 and fd00:f2b::/64 addresses;
//! bulk map keys that no frame carries (to reach 1M entries, more than 198.18.0.0/15 holds)
//! come from 100.64.0.0/10 and fd00:f2b::/64 and are data only.

pub const EDGE4: [u8; 4] = [198, 18, 0, 1];
pub const HIT4: [u8; 4] = [198, 18, 0, 7];
pub const MISS4: [u8; 4] = [198, 18, 0, 8];
pub const HIT6: [u8; 16] = [0xfd, 0, 0x0f, 0x2b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
pub const MISS6: [u8; 16] = [0xfd, 0, 0x0f, 0x2b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8];
pub const EDGE6: [u8; 16] = [0xfd, 0, 0x0f, 0x2b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// Data-only v4 key number `i` (i < 2^22): 100.64.0.0 + i.
pub fn bulk_v4(i: u32) -> [u8; 4] {
    (0x6440_0000u32 + i).to_be_bytes()
}

/// Data-only v6 key number `i`: fd00:f2b::1:0:0 + i.
pub fn bulk_v6(i: u32) -> [u8; 16] {
    let mut a = HIT6;
    a[10..12].copy_from_slice(&[0, 1]);
    a[12..16].copy_from_slice(&i.to_be_bytes());
    a
}

/// Live source number `j` (j < 65536): 198.19.0.0 + j, inside 198.18.0.0/15 and away from the
/// namespaces' own 198.18.0.x addresses.
pub fn live_v4(j: u32) -> [u8; 4] {
    (0xc613_0000u32 + (j & 0xffff)).to_be_bytes()
}

/// The ban list of `n` v4 addresses used by the harness: `live` of them are generator sources
/// (spread evenly through the list, so a linear rule scan meets them at every depth), the
/// rest are data-only keys.
pub fn ban_list_v4(n: usize, live: usize) -> (Vec<[u8; 4]>, Vec<[u8; 4]>) {
    let live = live.min(n).max(1);
    let stride = n / live;
    let mut all = Vec::with_capacity(n);
    let mut sources = Vec::with_capacity(live);
    let mut bulk = 0u32;
    for i in 0..n {
        if i % stride == 0 && sources.len() < live {
            let a = live_v4(sources.len() as u32);
            sources.push(a);
            all.push(a);
        } else {
            all.push(bulk_v4(bulk));
            bulk += 1;
        }
    }
    (all, sources)
}

fn csum(data: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        s += u32::from(w);
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// A 60-byte Ethernet/IPv4/UDP frame (valid IP checksum, UDP checksum 0) to port 9.
pub fn udp_v4(dst_mac: [u8; 6], src_mac: [u8; 6], src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(20u16 + 8 + 18).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut udp = [0u8; 8];
    udp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&9u16.to_be_bytes());
    udp[4..6].copy_from_slice(&26u16.to_be_bytes());
    f.extend_from_slice(&udp);
    f.resize(60, 0);
    f
}

/// A 64-byte Ethernet/IPv4/TCP SYN frame to port 443 (for BPF_PROG_TEST_RUN; never sent).
pub fn tcp_v4(src: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&EDGE4);
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&tcp_hdr(443));
    f.resize(64, 0);
    f
}

/// A 74-byte Ethernet/IPv6/TCP SYN frame to port 443 (for BPF_PROG_TEST_RUN; never sent).
pub fn tcp_v6(src: [u8; 16]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x86, 0xdd];
    let mut ip = [0u8; 40];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&20u16.to_be_bytes());
    ip[6] = 6;
    ip[7] = 64;
    ip[8..24].copy_from_slice(&src);
    ip[24..40].copy_from_slice(&EDGE6);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&tcp_hdr(443));
    f
}

fn tcp_hdr(dport: u16) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0..2].copy_from_slice(&40000u16.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = 0x02;
    h
}
