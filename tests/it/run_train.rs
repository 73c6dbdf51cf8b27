//! `anime-pipe run` through `train` and `eval` listed in pipeline.yaml (the sample config's stages): the first run
//! trains and names the sample grid and the generator, the second finds the run finished and skips it.
use crate::support::anime_pipe;

#[test]
fn run_trains_once_and_a_rerun_skips_the_finished_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("demo");
    let out = anime_pipe().arg("sample-data").arg(&d).args(["--count", "12"]).output().unwrap();
    assert!(out.status.success());
    // The sample config, made tiny: 12 faces do not fill one batch of the demo preset.
    let yaml = std::fs::read_to_string(d.join("pipeline.yaml")).unwrap();
    let yaml = yaml.replace("  preset: demo", "  preset: demo\n  batch_size: 4\n  epochs: 2\n  sample_every: 1");
    std::fs::write(d.join("pipeline.yaml"), yaml).unwrap();
    let run = || {
        let out = anime_pipe().arg("--config").arg(d.join("pipeline.yaml")).args(["-j", "2", "run"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let first = run();
    let fact = |text: &str, key: &str| -> String {
        let line = text.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key:?} in {text}"));
        line[key.len()..].trim().to_string()
    };
    let generator = fact(&first, "generator ");
    assert!(std::path::Path::new(&generator).is_file(), "{first}");
    assert!(generator.contains("runs/demo-"), "{generator}");
    let grid = fact(&first, "sample grid");
    assert!(grid.ends_with("samples/epoch-0002.png") && std::path::Path::new(&grid).is_file(), "{first}");
    assert!(fact(&first, "skipped").contains("no Inception model"), "eval without the model: {first}");
    let second = run();
    assert!(second.contains("up to date (skipped)"), "{second}");
    assert!(!second.contains("steps this session"), "nothing retrained: {second}");
    assert_eq!(fact(&second, "generator "), generator);
}
