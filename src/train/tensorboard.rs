//! TensorBoard event files (`runs/<name>/events.out.tfevents.*`), so `tensorboard --logdir runs` shows a run's
//! scalars (losses, D outputs, learning rates, images/s) and each epoch's sample grid.
//!
//! Written by hand: the format is small and stable (TFRecord framing around `tensorflow.Event` protobuf messages),
//! and the crates that write it either pull in the TensorFlow protos through `protoc` at build time or are
//! unmaintained. The messages below declare only the fields written, with the field numbers of TensorFlow's
//! `event.proto` and `summary.proto`; prost (already used by onnxgrad) encodes them.
//!
//! TFRecord: each record is `u64 length (LE) | u32 masked_crc32c(length bytes) | data | u32 masked_crc32c(data)`,
//! where `masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8` and crc32c is the Castagnoli CRC.
use anyhow::{Context, Result};
use prost::Message;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// `tensorflow.Event` (only `wall_time`, `step`, and the `file_version` / `summary` members of its `what` oneof).
#[derive(Clone, PartialEq, Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value` (`simple_value` or `image` of its `value` oneof).
#[derive(Clone, PartialEq, Message)]
pub struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
    #[prost(message, optional, tag = "4")]
    pub image: Option<SummaryImage>,
}

/// `tensorflow.Summary.Image`: an encoded (PNG) image.
#[derive(Clone, PartialEq, Message)]
pub struct SummaryImage {
    #[prost(int32, tag = "1")]
    pub height: i32,
    #[prost(int32, tag = "2")]
    pub width: i32,
    /// 3 = RGB.
    #[prost(int32, tag = "3")]
    pub colorspace: i32,
    #[prost(bytes = "vec", tag = "4")]
    pub encoded_image_string: Vec<u8>,
}

/// An open event file. Records are buffered; [`EventWriter::flush`] makes them visible to TensorBoard.
pub struct EventWriter {
    out: BufWriter<File>,
    path: PathBuf,
}

impl EventWriter {
    /// A new event file in `dir` (`events.out.tfevents.<unix seconds>.<host>.<pid>`: a resumed run adds a file,
    /// TensorBoard reads them all), starting with the `file_version` record.
    pub fn create(dir: &Path) -> Result<EventWriter> {
        let now = now();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty() && !h.contains('/'))
            .unwrap_or_else(|| "localhost".into());
        let path = dir.join(format!("events.out.tfevents.{}.{host}.{}", now as u64, std::process::id()));
        let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut writer = EventWriter { out: BufWriter::new(file), path };
        let version = Event { wall_time: now, file_version: Some("brain.Event:2".into()), ..Event::default() };
        writer.write_event(&version)?;
        writer.flush()?;
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Scalars at `step`, one record.
    pub fn scalars(&mut self, step: u64, values: &[(&str, f64)]) -> Result<()> {
        let value = values
            .iter()
            .map(|&(tag, v)| SummaryValue { tag: tag.into(), simple_value: Some(v as f32), image: None })
            .collect();
        self.summary(step, Summary { value })
    }

    /// A PNG image at `step`.
    pub fn image(&mut self, step: u64, tag: &str, png: Vec<u8>, width: u32, height: u32) -> Result<()> {
        let image =
            SummaryImage { height: height as i32, width: width as i32, colorspace: 3, encoded_image_string: png };
        let value = vec![SummaryValue { tag: tag.into(), simple_value: None, image: Some(image) }];
        self.summary(step, Summary { value })
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().with_context(|| format!("cannot write {}", self.path.display()))
    }

    fn summary(&mut self, step: u64, summary: Summary) -> Result<()> {
        self.write_event(&Event { wall_time: now(), step: step as i64, file_version: None, summary: Some(summary) })
    }

    fn write_event(&mut self, event: &Event) -> Result<()> {
        let data = event.encode_to_vec();
        let record = tfrecord(&data);
        self.out.write_all(&record).with_context(|| format!("cannot write {}", self.path.display()))
    }
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// One TFRecord around `data`.
pub fn tfrecord(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bytewise with a table built at compile time.
fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { (c >> 1) ^ 0x82f6_3b78 } else { c >> 1 };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        // The standard check value of CRC-32C ("123456789"), and RFC 3720's 32 zero bytes.
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
    }

    #[test]
    fn records_frame_the_event_bytes() {
        let record = tfrecord(b"abc");
        assert_eq!(record.len(), 3 + 16);
        assert_eq!(u64::from_le_bytes(record[..8].try_into().unwrap()), 3);
        assert_eq!(&record[12..15], b"abc");
        assert_eq!(u32::from_le_bytes(record[15..].try_into().unwrap()), masked_crc32c(b"abc"));
    }
}
