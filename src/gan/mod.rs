//! The GAN: models as code, training steps as standard ONNX graphs, and the runner that executes them with ONNX
//! Runtime (no training build of ONNX Runtime needed: forward, backward and Adam are ordinary operators written by
//! `onnxgrad`).
//!
//! * [`augment`]: DiffAugment's in-graph transforms and the runner's draws of their random inputs.
//! * [`models`]: [`models::Arch`] (DCGAN at 64/128, the anime300 variant; plain serialisable data) and the
//!   generator / discriminator functions over an `onnxgrad::nn::Net`.
//! * [`steps`]: the graphs. [`steps::d_step`] and [`steps::g_step`] (one network's update each),
//!   [`steps::fused_step`] (a whole iteration in one graph), [`steps::generator_inference`]; each returns a
//!   [`steps::StepGraph`] whose ports carry a [`steps::Role`].
//! * [`runner`]: [`runner::Runner`] keeps the state on the device and runs iterations; [`runner::GanConfig`]
//!   holds everything that defines results.
//! * [`generator`]: running exported generators (ours and PyTorch's) on seeded latents, for `sample`, the
//!   trainer's sample grids and `eval`.
//! * [`export`]: `anime-pipe graph` (writes the four `.onnx` files and describes them); [`mod@bench`]: the hidden
//!   `anime-pipe bench-step`.
//!
//! # Graph I/O naming convention
//!
//! | name | dtype, shape | role |
//! |---|---|---|
//! | `real` | u8 `[B, S, S, 3]` | batch: real images, NHWC as in the shards; cast, scaled to [-1, 1] and transposed to NCHW in the graph |
//! | `z` | f32 `[B, nz]` | batch: latents (the D step and the G step of one iteration get the same `z`) |
//! | `real_target`, `fake_target` | f32 `[B]` | batch (D step): per-sample BCE targets (smoothing, flips) |
//! | `gen_target` | f32 `[B]` | batch (G step): per-sample target of G's loss |
//! | `d.drop_<pass>.mask` | f32 `[B, F]` | batch (anime300): 0/1 dropout mask of one D application (`real`, `fake`, `gen`) |
//! | `aug_<pass>.{brightness,saturation,contrast}` | f32 `[B, 1, 1, 1]` | batch (DiffAugment): per-sample colour offset and factors of one D application |
//! | `aug_<pass>.{rows,cols}`, `aug_<pass>.cutout` | f32 `[B, 1, S, S]` | batch (DiffAugment): one-hot shift matrices, 0/1 cutout mask ([`augment`]) |
//! | `d_adam.{lr,beta1,beta2,eps,weight_decay}`, `g_adam.*` | f32 `[]` | hyperparameter |
//! | `d_adam.step`, `g_adam.step` | i64 `[]` | hyperparameter: Adam's `t` of the update being made (1-based) |
//! | `g.*`, `d.*` (e.g. `g.convt1.weight`, `d.bn2.bias`) | f32 | state: parameters |
//! | `g.bnK.running_mean`, `g.bnK.running_var`, `d.bnK.*` | f32 `[C]` | state: batch-norm running statistics |
//! | `d.<layer>.weight_u` | f32 `[out]` | state (spectral norm): the power iteration's vector, updated by the D step only |
//! | `X.adam_m`, `X.adam_v` | f32, `X`'s shape | state: Adam moments of parameter `X` (zero at the start) |
//! | `X.new` | as `X` | output: updated state; feed it as `X` next time |
//! | `d_loss`, `d_real`, `d_fake`, `g_loss`, `g_fake` | f32 `[]` | metric (see [`steps`]) |
//!
//! A state input is "updated" by a graph when the graph outputs `X.new`, and "read only" otherwise (the
//! generator's weights in the D step, the discriminator's weights in the G step). The generator's inference graph
//! takes `z` `[N, nz]` and outputs `image` (f32 `[N, 3, S, S]`, RGB in [-1, 1], the training convention) and
//! `image_u8` (u8 `[N, S, S, 3]`, RGB, ready for PNG writers).
//!
//! # Batch-norm running statistics
//!
//! Both networks run in training mode during training, so their batch norms normalise with batch statistics and
//! the running statistics are only *recorded*, with PyTorch's convention (momentum 0.1, unbiased variance):
//! * **G's** running statistics are updated once per iteration, as by PyTorch's single `netG(noise)` call: by the
//!   G step (and the fused graph). The D step runs G in training mode without reading or updating them (its batch
//!   statistics are the same as the G step's: same `z`, same weights).
//! * **D's** are updated on every D forward in training mode, as in PyTorch's example: on the real batch, then on
//!   the generated batch in the D step, then once more in the G step. D is never evaluated in eval mode, so they
//!   only matter to make checkpoints match PyTorch's `state_dict`.
//!
//! The generator's inference graph uses batch norm in evaluation mode with the running statistics, baked in.
pub mod augment;
pub mod bench;
pub mod export;
pub mod generator;
pub mod models;
pub mod runner;
pub mod steps;
