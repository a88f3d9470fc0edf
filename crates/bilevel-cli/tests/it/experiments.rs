//! Every shipped experiment file validates (`bilevel run --dry-run` builds its problems, so the
//! data files it names must load).

use std::process::Command;

#[test]
fn every_experiment_file_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    for expected in [
        "hyperclean_mnist.toml",
        "hyperclean_mlp.toml",
        "ijcnn1.toml",
        "imaml_fewshot.toml",
        "lancbio_synthetic.toml",
        "paper_esj.toml",
        "paper_esj_hyperrep.toml",
        "paper_fsla.toml",
        "paper_lancbio.toml",
        "paper_mrbo_vrbo.toml",
        "paper_ufo_blo.toml",
        "paper_ufo_blo_fewshot.toml",
    ] {
        assert!(
            files.iter().any(|f| f.ends_with(expected)),
            "experiments/{expected} is missing"
        );
    }
    for file in files {
        let out = Command::new(env!("CARGO_BIN_EXE_bilevel"))
            .args(["run", "--dry-run"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
