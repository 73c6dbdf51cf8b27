//! Partitioned runs: which share of the items this process works on (`--partition K/N`, or the array index of the
//! batch system that started it), and which items belong to which partition.
//!
//! Detection, first match wins:
//! | origin | index | count |
//! |---|---|---|
//! | `--partition K/N` | K | N |
//! | Slurm job array | `SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN` | `SLURM_ARRAY_TASK_COUNT` |
//! | Slurm job array, count given | `SLURM_ARRAY_TASK_ID` | `--partitions N`, else `ANIME_PIPE_PARTITIONS` |
//! | Kubernetes Indexed Job | `JOB_COMPLETION_INDEX` | `--partitions N`, else `ANIME_PIPE_PARTITIONS` |
//! | AWS Batch array job | `AWS_BATCH_JOB_ARRAY_INDEX` | `AWS_BATCH_JOB_ARRAY_SIZE` |
//! | Google Cloud Batch | `BATCH_TASK_INDEX` | `BATCH_TASK_COUNT` |
//!
//! With the count given, a Slurm task's index is its array index itself, so a subset of an array can be
//! re-submitted (`sbatch --array=7,19 ... anime-pipe --partitions 32 crop` re-runs partitions 7 and 19 of 32).
//!
//! Items go to partitions by content hash ([`Partition::owns`]), so the split does not depend on the order in which a
//! file system lists files, nor on how many items there are.
use anyhow::{bail, Context, Result};
use serde::Serialize;

/// Partition `index` of `count` (0-based), and where that was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partition {
    pub index: u32,
    pub count: u32,
    /// "--partition", "Slurm job array", ... (for the summary).
    pub origin: String,
}

impl Partition {
    /// True when the item with this content hash (64 hex digits, or any string) belongs to this partition.
    pub fn owns(&self, content_hash: &str) -> bool {
        partition_of(content_hash, self.count) == self.index
    }

    /// "2/4 (Slurm job array)".
    pub fn describe(&self) -> String {
        format!("{}/{} ({})", self.index, self.count, self.origin)
    }
}

/// The partition of a content hash among `count`: the first 8 bytes of blake3 of the hash string, big-endian,
/// modulo `count` (hashing again spreads evenly even when the input is not itself a uniform hash).
pub fn partition_of(content_hash: &str, count: u32) -> u32 {
    let digest = blake3::hash(content_hash.as_bytes());
    let u = u64::from_be_bytes(digest.as_bytes()[..8].try_into().expect("blake3 has 32 bytes"));
    (u % u64::from(count)) as u32
}

/// Parses `K/N` (`--partition`).
pub fn parse_flag(text: &str) -> Result<(u32, u32)> {
    let (k, n) = text.split_once('/').with_context(|| format!("--partition {text:?}: expected K/N, e.g. 0/4"))?;
    let (k, n): (u32, u32) = (
        k.trim().parse().with_context(|| format!("--partition {text:?}: K must be a number"))?,
        n.trim().parse().with_context(|| format!("--partition {text:?}: N must be a number"))?,
    );
    checked(k, n, "--partition")
}

fn checked(index: u32, count: u32, origin: &str) -> Result<(u32, u32)> {
    if count == 0 || index >= count {
        bail!("{origin}: partition {index} of {count}: expected 0 <= K < N");
    }
    Ok((index, count))
}

/// The partition this process runs: the flag, else the batch system's environment, else none (the whole stage).
/// `count_flag` is `--partitions N`, the count for schedulers that only give an index. `var` reads the
/// environment (injected for tests).
pub fn detect(
    flag: Option<(u32, u32)>,
    count_flag: Option<u32>,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<Partition>> {
    let make = |(index, count): (u32, u32), origin: &str| Partition { index, count, origin: origin.to_string() };
    if let Some(flag) = flag {
        return Ok(Some(make(flag, "--partition")));
    }
    let number = |name: &str| -> Result<Option<u32>> {
        var(name)
            .map(|v| v.trim().parse::<u32>().with_context(|| format!("{name}={v:?}: expected a number")))
            .transpose()
    };
    let given_count = match count_flag {
        Some(n) => Some(n),
        None => number("ANIME_PIPE_PARTITIONS")?,
    };
    if let (Some(id), Some(count)) = (number("SLURM_ARRAY_TASK_ID")?, given_count) {
        return Ok(Some(make(checked(id, count, "Slurm job array")?, "Slurm job array")));
    }
    if let (Some(id), Some(count)) = (number("SLURM_ARRAY_TASK_ID")?, number("SLURM_ARRAY_TASK_COUNT")?) {
        let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let index = id.checked_sub(min).context("SLURM_ARRAY_TASK_ID is below SLURM_ARRAY_TASK_MIN")?;
        return Ok(Some(make(checked(index, count, "Slurm job array")?, "Slurm job array")));
    }
    if let Some(index) = number("JOB_COMPLETION_INDEX")? {
        let count = given_count.context(
            "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but not the number of partitions: pass \
             --partitions N or set ANIME_PIPE_PARTITIONS to the Job's completions",
        )?;
        return Ok(Some(make(checked(index, count, "Kubernetes Indexed Job")?, "Kubernetes Indexed Job")));
    }
    if let (Some(index), Some(count)) = (number("AWS_BATCH_JOB_ARRAY_INDEX")?, number("AWS_BATCH_JOB_ARRAY_SIZE")?) {
        return Ok(Some(make(checked(index, count, "AWS Batch array job")?, "AWS Batch array job")));
    }
    if let (Some(index), Some(count)) = (number("BATCH_TASK_INDEX")?, number("BATCH_TASK_COUNT")?) {
        return Ok(Some(make(checked(index, count, "Google Cloud Batch")?, "Google Cloud Batch")));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    fn detected(flag: Option<(u32, u32)>, count: Option<u32>, pairs: &[(&str, &str)]) -> Option<(u32, u32, String)> {
        detect(flag, count, env(pairs)).unwrap().map(|p| (p.index, p.count, p.origin))
    }

    #[test]
    fn every_scheduler_is_recognised() {
        let slurm = [("SLURM_ARRAY_TASK_ID", "12"), ("SLURM_ARRAY_TASK_COUNT", "4"), ("SLURM_ARRAY_TASK_MIN", "10")];
        assert_eq!(detected(None, None, &slurm), Some((2, 4, "Slurm job array".into())));
        let slurm_from_zero = [("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_COUNT", "4")];
        assert_eq!(detected(None, None, &slurm_from_zero), Some((3, 4, "Slurm job array".into())));
        // A re-submitted subset (--array=7,19) with the count given: the array index is the partition.
        let subset = [("SLURM_ARRAY_TASK_ID", "19"), ("SLURM_ARRAY_TASK_COUNT", "2"), ("SLURM_ARRAY_TASK_MIN", "7")];
        assert_eq!(detected(None, Some(32), &subset), Some((19, 32, "Slurm job array".into())));
        let with_env = [("SLURM_ARRAY_TASK_ID", "7"), ("ANIME_PIPE_PARTITIONS", "32")];
        assert_eq!(detected(None, None, &with_env), Some((7, 32, "Slurm job array".into())));
        let k8s = [("JOB_COMPLETION_INDEX", "1")];
        assert_eq!(detected(None, Some(8), &k8s), Some((1, 8, "Kubernetes Indexed Job".into())));
        let k8s_env = [("JOB_COMPLETION_INDEX", "5"), ("ANIME_PIPE_PARTITIONS", "6")];
        assert_eq!(detected(None, None, &k8s_env), Some((5, 6, "Kubernetes Indexed Job".into())));
        let aws = [("AWS_BATCH_JOB_ARRAY_INDEX", "0"), ("AWS_BATCH_JOB_ARRAY_SIZE", "2")];
        assert_eq!(detected(None, None, &aws), Some((0, 2, "AWS Batch array job".into())));
        let gcp = [("BATCH_TASK_INDEX", "7"), ("BATCH_TASK_COUNT", "10")];
        assert_eq!(detected(None, None, &gcp), Some((7, 10, "Google Cloud Batch".into())));
        assert_eq!(detected(None, None, &[]), None);
        // The flag wins over any environment.
        assert_eq!(detected(Some((1, 3)), None, &slurm), Some((1, 3, "--partition".into())));
    }

    #[test]
    fn bad_values_are_errors_that_name_the_variable() {
        let err = |flag, count, pairs: &[(&str, &str)]| format!("{:#}", detect(flag, count, env(pairs)).unwrap_err());
        assert!(err(None, None, &[("JOB_COMPLETION_INDEX", "1")]).contains("--partitions N"));
        assert!(err(None, None, &[("SLURM_ARRAY_TASK_ID", "x"), ("SLURM_ARRAY_TASK_COUNT", "2")])
            .contains("SLURM_ARRAY_TASK_ID"));
        assert!(err(None, None, &[("BATCH_TASK_INDEX", "4"), ("BATCH_TASK_COUNT", "4")]).contains("0 <= K < N"));
        assert!(parse_flag("3/3").is_err() && parse_flag("a/3").is_err() && parse_flag("1").is_err());
        assert_eq!(parse_flag("1/3").unwrap(), (1, 3));
    }

    #[test]
    fn partitions_cover_every_item_once_and_evenly() {
        let hashes: Vec<String> =
            (0..4000).map(|i| blake3::hash(&[i as u8, (i >> 8) as u8]).to_hex().to_string()).collect();
        let mut counts = [0u32; 4];
        for h in &hashes {
            let owners: Vec<u32> =
                (0..4).filter(|&k| Partition { index: k, count: 4, origin: String::new() }.owns(h)).collect();
            assert_eq!(owners.len(), 1);
            counts[owners[0] as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
    }
}
