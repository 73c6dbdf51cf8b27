//! The shard format: the contract between `pack`, which writes `shards/<size>/<split>-NNNNN.safetensors`, and
//! their readers (`train`'s loader, `eval`'s reference set, `verify`). See `stages::pack` for the layout.

/// `__metadata__.format` of every shard.
pub const SHARD_FORMAT: &str = "anime-pipe-shard/1";
/// The one tensor of a shard: U8 [N, size, size, 3] (NHWC, RGB).
pub const TENSOR_NAME: &str = "images";
/// The splits a pack has, in shard-name and manifest order.
pub const SPLITS: [&str; 2] = ["train", "val"];

/// True for "train" and "val".
pub fn is_split(name: &str) -> bool {
    SPLITS.contains(&name)
}
