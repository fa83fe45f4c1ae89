//! Parsing what users type: sizes and rates (`65536`, `64KiB`, `4MiB`, `25MB/s`) and chunk
//! lists (`0,2,5-9`).

/// Parses a byte count: a number with an optional unit (B, KB, MB, GB decimal; KiB, MiB,
/// GiB, TiB binary; case-insensitive) and, for rates, an optional `/s`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (try 65536, 64KiB, 4MiB)"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        other => return Err(format!("unknown unit {other:?} in {text:?}")),
    };
    let bytes = value * factor as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(bytes as u64)
}

/// Parses a rate for `--upload-limit`: a size per second, more than zero (a limit of
/// nothing would accept fetchers and then send them nothing).
pub fn parse_rate(text: &str) -> Result<u64, String> {
    match parse_size(text)? {
        0 => Err("an upload limit of 0 would send nothing; leave it out for no limit".into()),
        rate => Ok(rate),
    }
}

/// Parses a rate or a mix of rates over a group of nodes: `10MB`, or `10MB:80%,2MB:20%`
/// (shares in percent; they need not add up to 100, they are taken in proportion).
pub fn parse_mix(text: &str) -> Result<drizzle_sim::Mix, String> {
    parse_shares(text, |rate| match parse_size(rate)? {
        0 => Err(format!("{rate:?}: a rate of 0 would move nothing")),
        rate => Ok(rate),
    })
}

/// Parses a latency in milliseconds or a mix of them: `20`, or `5:80%,100:20%`.
pub fn parse_latency_mix(text: &str) -> Result<drizzle_sim::Mix, String> {
    parse_shares(text, |ms| {
        ms.trim()
            .parse()
            .map_err(|_| format!("{ms:?} is not a number of milliseconds"))
    })
}

/// `VALUE[:SHARE%],...`, each value read by `value`.
fn parse_shares(
    text: &str,
    value: impl Fn(&str) -> Result<u64, String>,
) -> Result<drizzle_sim::Mix, String> {
    let mut parts = Vec::new();
    for part in text.split(',') {
        let (v, share) = part.split_once(':').unwrap_or((part, "100"));
        let share: f64 = share
            .trim()
            .trim_end_matches('%')
            .parse()
            .ok()
            .filter(|s: &f64| *s > 0.0 && s.is_finite())
            .ok_or_else(|| format!("{part:?}: expected VALUE:SHARE%, e.g. 2MB:20%"))?;
        parts.push((value(v)?, share));
    }
    Ok(drizzle_sim::Mix(parts))
}

/// Parses `--chunk-size` and checks it against the protocol's bounds.
pub fn parse_chunk_size(text: &str) -> Result<u32, String> {
    use drizzle_core::limits::{MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};
    let size = parse_size(text)?;
    u32::try_from(size)
        .ok()
        .filter(|s| (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(s))
        .ok_or_else(|| {
            format!(
                "chunk size must be {MIN_CHUNK_SIZE} B to {} MiB",
                MAX_CHUNK_SIZE >> 20
            )
        })
}

/// Parses `HOST:PORT` or `IP:PORT`, resolving a host name (the first address it has).
pub fn parse_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let mut addrs = text
        .to_socket_addrs()
        .map_err(|e| format!("{text:?} is not HOST:PORT or IP:PORT: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

/// A `--chunks` list, sorted and without repeats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkList(pub Vec<u32>);

/// Parses `0,2,5-9` for clap.
pub fn parse_chunk_list(text: &str) -> Result<ChunkList, String> {
    parse_chunks(text).map(ChunkList)
}

/// Parses `0,2,5-9` into chunk indices.
pub fn parse_chunks(text: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("{part:?} is not a chunk index or range (like 0,2,5-9)");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if a > b || b - a > 10_000_000 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err("no chunks given".into());
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// A size for people: `100 MiB`, `1.5 GiB`, `512 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    if unit == "B" || value.fract() == 0.0 {
        format!("{value:.0} {unit}")
    } else {
        format!("{value:.1} {unit}")
    }
}

/// A rate for people, in decimal megabytes per second as network rates are quoted.
pub fn rate(bytes_per_sec: f64) -> String {
    format!("{:.1} MB/s", bytes_per_sec / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("2TiB"), Ok(2 << 40));
        assert_eq!(parse_size("25MB/s"), Ok(25_000_000));
        assert_eq!(parse_size("1.5 kb"), Ok(1500));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3 parsecs").is_err());
    }

    #[test]
    fn chunk_lists() {
        assert_eq!(parse_chunks("0,2,5-7"), Ok(vec![0, 2, 5, 6, 7]));
        assert_eq!(parse_chunks("3,3,1"), Ok(vec![1, 3]));
        assert!(parse_chunks("5-2").is_err());
        assert!(parse_chunks("x").is_err());
        assert!(parse_chunks("").is_err());
    }
}
