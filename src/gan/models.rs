//! The GAN models as code: generator and discriminator functions over an `onnxgrad::nn::Net`, so one definition
//! builds the training-step graphs (parameters as graph inputs, batch statistics) and the inference graph
//! (parameters baked in, running statistics).
//!
//! Two families, selected by [`Arch`] (plain data, serialisable into a run's resolved config):
//!
//! * **DCGAN** (Radford et al. 2015, in the form of PyTorch's `examples/dcgan`; `bench/torch_dcgan.py` is the same
//!   network). With `L = log2(size / 4)` (4 at 64x64, 5 at 128x128):
//!   - G: `z [B, nz]` as `[B, nz, 1, 1]` -> ConvTranspose(nz -> ngf·2^(L-1), k4 s1 p0) + BN + ReLU, then L-1 times
//!     ConvTranspose(c -> c/2, k4 s2 p1) + BN + ReLU, then ConvTranspose(ngf -> 3, k4 s2 p1) + Tanh. No bias on
//!     convolutions followed by BN (nor on the last one, as in the PyTorch example).
//!   - D: Conv(3 -> ndf, k4 s2 p1) + LeakyReLU(0.2) (no BN on the first layer), then L-1 times
//!     Conv(c -> 2c, k4 s2 p1) + BN + LeakyReLU(0.2), then Conv(ndf·2^(L-1) -> 1, k4 s1 p0) -> one logit per image.
//! * **anime300**, our reading of the seed paper "DCGANs for anime faces (100/200/300 epochs)". With
//!   `L = log2(size / 8)` (3 at 64x64):
//!   - G: Linear(nz -> 8·8·ngf·2^L, no bias) reshaped to `[B, ngf·2^L, 8, 8]` (8x8x512 at the defaults) + BN +
//!     LeakyReLU(0.2), then L times ConvTranspose(c -> c/2, k4 s2 p1) + BN + LeakyReLU(0.2), then
//!     Conv(ngf -> 3, k3 s1 p1, bias) + Tanh.
//!   - D: L times Conv(c -> c', k3 s1 p1, bias) + LeakyReLU(0.2) + MaxPool(2) with widths ndf, 2ndf, 4ndf...,
//!     flatten, Linear(-> 8·ndf = 512, bias) + LeakyReLU(0.2), Dropout(0.4), Linear(-> 1, bias).
//!
//! Initialisation (from `onnxgrad::nn`, seeded per tensor name): weights N(0, 0.02), batch-norm scale N(1, 0.02),
//! biases and shifts 0, running mean 0 and variance 1. Parameter names: `g.convt1.weight`, `g.bn1.weight`,
//! `d.conv2.weight`, `d.bn2.running_mean`, ...
use anyhow::{bail, ensure, Result};
use onnxgrad::nn::Net;
use onnxgrad::{PoolSpec, ValueId};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// The model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Dcgan,
    Anime300,
}

/// A GAN architecture: family, image size and widths. Presets: [`Arch::dcgan64`], [`Arch::dcgan128`],
/// [`Arch::anime300`] (also parsed from `"dcgan64"`, `"dcgan128"`, `"anime300"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arch {
    pub family: Family,
    /// Square image side in pixels (a power of two: >= 8 for DCGAN, >= 16 for anime300).
    pub image_size: usize,
    /// Latent size.
    pub nz: usize,
    /// Generator base width (channels of its last hidden layer).
    pub ngf: usize,
    /// Discriminator base width (channels of its first layer).
    pub ndf: usize,
    /// Discriminator dropout probability before its last layer (anime300: 0.4; DCGAN has none and must keep 0).
    pub dropout: f32,
    /// Spectral normalisation of every discriminator weight (Miyato et al. 2018), one power iteration per step with
    /// its vectors `d.<layer>.weight_u` carried as state; the DCGAN discriminator then drops its batch norms, as
    /// SN-GAN's does (a batch norm after a convolution would undo the normalisation).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub spectral_norm: bool,
}

/// The LeakyReLU slope used throughout (DCGAN paper).
pub const LEAKY_SLOPE: f32 = 0.2;

impl Arch {
    /// DCGAN at 64x64: nz 100, ngf = ndf = 64 (the PyTorch example).
    pub fn dcgan64() -> Arch {
        Arch { family: Family::Dcgan, image_size: 64, nz: 100, ngf: 64, ndf: 64, dropout: 0.0, spectral_norm: false }
    }

    /// DCGAN at 128x128 (one more up/down layer): nz 100, ngf = ndf = 64.
    pub fn dcgan128() -> Arch {
        Arch { image_size: 128, ..Arch::dcgan64() }
    }

    /// The seed paper's anime-face DCGAN at 64x64: nz 300, 8x8x512 projection, dense-512 discriminator head.
    pub fn anime300() -> Arch {
        Arch { family: Family::Anime300, image_size: 64, nz: 300, ngf: 64, ndf: 64, dropout: 0.4, spectral_norm: false }
    }

    /// A short name: the preset's when the family and size match one (`dcgan64`), else `<family><size>`.
    pub fn name(&self) -> String {
        match self.family {
            Family::Dcgan => format!("dcgan{}", self.image_size),
            Family::Anime300 if self.image_size == 64 => "anime300".to_string(),
            Family::Anime300 => format!("anime300_{}", self.image_size),
        }
    }

    /// Checks sizes and widths; every builder calls it.
    pub fn validate(&self) -> Result<()> {
        let min = match self.family {
            Family::Dcgan => 8,
            Family::Anime300 => 16,
        };
        ensure!(
            self.image_size.is_power_of_two() && self.image_size >= min,
            "{}: image size {} must be a power of two >= {min}",
            self.name(),
            self.image_size
        );
        ensure!(self.nz > 0 && self.ngf > 0 && self.ndf > 0, "{}: nz, ngf and ndf must be positive", self.name());
        ensure!((0.0..1.0).contains(&self.dropout), "{}: dropout {} must be in [0, 1)", self.name(), self.dropout);
        if self.family == Family::Dcgan && self.dropout != 0.0 {
            bail!("{}: the DCGAN discriminator has no dropout layer (dropout must be 0)", self.name());
        }
        Ok(())
    }

    /// Number of resolution-changing hidden blocks (see the module docs).
    fn levels(&self) -> usize {
        let base = match self.family {
            Family::Dcgan => 4,
            Family::Anime300 => 8,
        };
        (self.image_size / base).trailing_zeros() as usize
    }

    /// Shape of the width of the discriminator's dropout layer, `[batch, features]`, when it has one.
    pub fn dropout_features(&self) -> Option<usize> {
        (self.family == Family::Anime300 && self.dropout > 0.0).then_some(8 * self.ndf)
    }
}

impl FromStr for Arch {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Arch> {
        match s {
            "dcgan64" => Ok(Arch::dcgan64()),
            "dcgan128" => Ok(Arch::dcgan128()),
            "anime300" => Ok(Arch::anime300()),
            _ => bail!("unknown architecture {s:?}: expected dcgan64, dcgan128 or anime300"),
        }
    }
}

/// The generator: `z [B, nz]` -> images `[B, 3, S, S]` in (-1, 1), parameters under `g.`.
pub fn generator(net: &mut Net, arch: &Arch, z: ValueId) -> Result<ValueId> {
    arch.validate()?;
    Ok(net.scoped("g", |net| match arch.family {
        Family::Dcgan => dcgan_generator(net, arch, z),
        Family::Anime300 => anime300_generator(net, arch, z),
    })?)
}

/// The discriminator: images `[B, 3, S, S]` -> logits `[B]`, parameters under `d.`. `pass` names this
/// application's dropout mask input (`d.drop_<pass>.mask`), so one graph can run D several times with
/// independent masks; it has no other effect.
pub fn discriminator(net: &mut Net, arch: &Arch, x: ValueId, pass: &str) -> Result<ValueId> {
    arch.validate()?;
    net.set_spectral_norm(arch.spectral_norm);
    let logits = net.scoped("d", |net| match arch.family {
        Family::Dcgan => dcgan_discriminator(net, arch, x),
        Family::Anime300 => anime300_discriminator(net, arch, x, pass),
    });
    net.set_spectral_norm(false);
    Ok(logits?)
}

fn dcgan_generator(net: &mut Net, arch: &Arch, z: ValueId) -> onnxgrad::Result<ValueId> {
    let levels = arch.levels();
    let batch = net.graph().shape(z)[0];
    let mut h = net.graph().reshape(z, &[batch as i64, arch.nz as i64, 1, 1])?;
    for i in 0..levels {
        let width = arch.ngf << (levels - 1 - i);
        let (stride, pad) = if i == 0 { (1, 0) } else { (2, 1) };
        h = net.conv_transpose2d(&format!("convt{}", i + 1), h, width, 4, stride, pad, 0, false)?;
        h = net.batch_norm(&format!("bn{}", i + 1), h)?;
        h = net.graph().relu(h)?;
    }
    let h = net.conv_transpose2d(&format!("convt{}", levels + 1), h, 3, 4, 2, 1, 0, false)?;
    net.graph().tanh(h)
}

fn dcgan_discriminator(net: &mut Net, arch: &Arch, x: ValueId) -> onnxgrad::Result<ValueId> {
    let levels = arch.levels();
    let mut h = x;
    for i in 0..levels {
        let name = i + 1;
        h = net.conv2d(&format!("conv{name}"), h, arch.ndf << i, 4, 2, 1, false)?;
        if i > 0 && !arch.spectral_norm {
            h = net.batch_norm(&format!("bn{name}"), h)?;
        }
        h = net.graph().leaky_relu(h, LEAKY_SLOPE)?;
    }
    let logits = net.conv2d(&format!("conv{}", levels + 1), h, 1, 4, 1, 0, false)?;
    let batch = net.graph().shape(logits)[0];
    net.graph().reshape(logits, &[batch as i64])
}

fn anime300_generator(net: &mut Net, arch: &Arch, z: ValueId) -> onnxgrad::Result<ValueId> {
    let levels = arch.levels();
    let width = arch.ngf << levels;
    let batch = net.graph().shape(z)[0];
    let h = net.linear("project", z, 8 * 8 * width, false)?;
    let mut h = net.graph().reshape(h, &[batch as i64, width as i64, 8, 8])?;
    h = net.batch_norm("bn0", h)?;
    h = net.graph().leaky_relu(h, LEAKY_SLOPE)?;
    for i in 0..levels {
        let name = i + 1;
        h = net.conv_transpose2d(&format!("convt{name}"), h, width >> name, 4, 2, 1, 0, false)?;
        h = net.batch_norm(&format!("bn{name}"), h)?;
        h = net.graph().leaky_relu(h, LEAKY_SLOPE)?;
    }
    let h = net.conv2d("to_rgb", h, 3, 3, 1, 1, true)?;
    net.graph().tanh(h)
}

fn anime300_discriminator(net: &mut Net, arch: &Arch, x: ValueId, pass: &str) -> onnxgrad::Result<ValueId> {
    let mut h = x;
    for i in 0..arch.levels() {
        h = net.conv2d(&format!("conv{}", i + 1), h, arch.ndf << i, 3, 1, 1, true)?;
        h = net.graph().leaky_relu(h, LEAKY_SLOPE)?;
        h = net.graph().max_pool(h, &PoolSpec::new2d(2, 2, 0))?;
    }
    let h = net.graph().flatten(h, 1)?;
    let h = net.linear("fc1", h, 8 * arch.ndf, true)?;
    let h = net.graph().leaky_relu(h, LEAKY_SLOPE)?;
    let h = net.dropout(&format!("drop_{pass}"), h, arch.dropout)?;
    let logits = net.linear("fc2", h, 1, true)?;
    let batch = net.graph().shape(logits)[0];
    net.graph().reshape(logits, &[batch as i64])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gan::steps::init_store;
    use onnxgrad::nn::{Binding, Mode, ParamKind, ParamStore};
    use onnxgrad::{DType, Graph};

    fn count(store: &ParamStore, prefix: &str, kind: ParamKind) -> usize {
        let names = store.names().into_iter().filter(|n| n.starts_with(prefix) && store.kind(n) == Some(kind));
        names.map(|n| store.get(&n).unwrap().data.len()).sum()
    }

    #[test]
    fn dcgan64_has_the_pytorch_example_sizes() {
        // PyTorch's DCGAN example (bench/torch_dcgan.py): netG 3,576,704 parameters, netD 2,765,568; running
        // statistics 2 x (512+256+128+64) in G and 2 x (128+256+512) in D (PyTorch adds num_batches_tracked).
        let store = init_store(&Arch::dcgan64(), 1).unwrap();
        assert_eq!(count(&store, "g.", ParamKind::Trainable), 3_576_704);
        assert_eq!(count(&store, "d.", ParamKind::Trainable), 2_765_568);
        assert_eq!(count(&store, "g.", ParamKind::Buffer), 1920);
        assert_eq!(count(&store, "d.", ParamKind::Buffer), 1792);
        // DCGAN's initialisation: conv weights N(0, 0.02), batch-norm scales N(1, 0.02).
        let w = &store.get("d.conv2.weight").unwrap().data;
        let mean = w.iter().sum::<f32>() / w.len() as f32;
        let std = (w.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / w.len() as f32).sqrt();
        assert!(mean.abs() < 1e-3 && (std - 0.02).abs() < 1e-3, "mean {mean}, std {std}");
        let s = &store.get("g.bn1.weight").unwrap().data;
        assert!(s.iter().all(|x| (x - 1.0).abs() < 0.12), "batch-norm scales near 1");
    }

    #[test]
    fn every_arch_maps_latents_to_images_and_images_to_one_logit() {
        // Layer structure depends on the family and size only; narrow widths keep the initialisation cheap.
        let narrow = |a: Arch| Arch { ngf: 4, ndf: 2, ..a };
        let archs = [Arch::dcgan64(), Arch::dcgan128(), Arch::anime300(), Arch { image_size: 32, ..Arch::anime300() }];
        for arch in archs.map(narrow) {
            let mut store = ParamStore::new(0);
            let mut g = Graph::new("shapes");
            let z = g.input("z", DType::F32, &[3, arch.nz]).unwrap();
            let mut net = Net::new(&mut g, &mut store, Mode::Train, Binding::Inputs);
            let image = generator(&mut net, &arch, z).unwrap();
            let logits = discriminator(&mut net, &arch, image, "x").unwrap();
            let masks = net.finish().masks;
            let s = arch.image_size;
            assert_eq!(g.shape(image), [3, 3, s, s], "{}", arch.name());
            assert_eq!(g.shape(logits), [3], "{}", arch.name());
            let want_masks: Vec<(String, Vec<usize>)> =
                arch.dropout_features().map(|f| ("d.drop_x.mask".to_string(), vec![3, f])).into_iter().collect();
            assert_eq!(masks, want_masks, "{}", arch.name());
            let shape = |n: &str| store.get(n).map(|t| t.shape.clone());
            match (arch.family, s) {
                // 64x64 anime300: an 8x8x(8 ngf) projection (8x8x512 at ngf 64) and a dense layer of 8 ndf (512).
                (Family::Anime300, 64) => {
                    assert_eq!(shape("g.project.weight"), Some(vec![8 * 8 * 8 * 4, 300]));
                    assert_eq!(shape("d.fc1.weight"), Some(vec![8 * 2, 4 * 2 * 8 * 8]));
                }
                // dcgan128: one more layer each side than dcgan64 (z -> 16 ngf at 4x4, then 8, 4, 2, 1 ngf, RGB).
                (Family::Dcgan, 128) => {
                    assert_eq!(shape("g.convt1.weight"), Some(vec![100, 16 * 4, 4, 4]));
                    assert!(shape("g.convt6.weight").is_some() && shape("d.conv6.weight").is_some());
                    assert!(shape("g.convt7.weight").is_none() && shape("d.conv7.weight").is_none());
                }
                _ => {}
            }
        }
    }

    #[test]
    fn arch_parses_round_trips_and_validates() {
        assert_eq!("dcgan128".parse::<Arch>().unwrap(), Arch::dcgan128());
        assert!("dcgan32".parse::<Arch>().unwrap_err().to_string().contains("dcgan64, dcgan128 or anime300"));
        let json = serde_json::to_string(&Arch::anime300()).unwrap();
        assert!(json.contains("\"family\":\"anime300\""), "{json}");
        assert_eq!(serde_json::from_str::<Arch>(&json).unwrap(), Arch::anime300());
        assert!(Arch { image_size: 48, ..Arch::dcgan64() }.validate().is_err());
        assert!(Arch { dropout: 0.5, ..Arch::dcgan64() }.validate().is_err());
        assert!(Arch { image_size: 8, ..Arch::anime300() }.validate().is_err());
        assert_eq!(Arch { image_size: 32, ..Arch::dcgan64() }.name(), "dcgan32");
    }
}
