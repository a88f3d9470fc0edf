//! The loaders on the shipped files (counts from shared/data/README.md), round trips through
//! every writer, and arbitrary bytes fed to every parser.

use std::path::PathBuf;

use bilevel::data::csv::CsvOptions;
use bilevel::data::libsvm::LibsvmOptions;
use bilevel::data::{Dataset, DatasetSpec, Design, csv, data_dir, idx, libsvm, npy};
use proptest::prelude::*;

fn shared(name: &str) -> bilevel::data::LoadedData {
    let dir = data_dir();
    assert!(
        dir.is_dir(),
        "data directory {} not found: set BILEVEL_DATA_DIR to the shared/data folder",
        dir.display()
    );
    DatasetSpec::shared(name)
        .load(0)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn label_counts(ds: &Dataset) -> Vec<(f64, usize)> {
    let cl = ds.class_labels().unwrap();
    let mut counts = vec![0usize; cl.classes.len()];
    for &c in &cl.class {
        counts[c as usize] += 1;
    }
    cl.classes.into_iter().zip(counts).collect()
}

#[test]
fn ijcnn1_matches_the_readme() {
    let d = shared("ijcnn1");
    let (train, test) = (d.train, d.test.unwrap());
    assert_eq!((train.len(), train.n_features()), (49_990, 22));
    assert_eq!(train.design.nnz(), 649_870); // explicit zeros are kept
    assert_eq!(label_counts(&train), vec![(-1.0, 45_137), (1.0, 4_853)]);
    assert_eq!((test.len(), test.n_features()), (91_701, 22));
    assert_eq!(test.design.nnz(), 1_192_113);
    assert_eq!(label_counts(&test), vec![(-1.0, 82_989), (1.0, 8_712)]);
}

#[test]
fn a9a_test_file_is_widened_to_the_training_features() {
    let d = shared("a9a");
    let (train, test) = (d.train, d.test.unwrap());
    assert_eq!(
        (train.len(), train.n_features(), train.design.nnz()),
        (32_561, 123, 451_592)
    );
    assert_eq!(label_counts(&train), vec![(-1.0, 24_720), (1.0, 7_841)]);
    assert_eq!(
        (test.len(), test.n_features(), test.design.nnz()),
        (16_281, 123, 225_731)
    );
    assert_eq!(label_counts(&test), vec![(-1.0, 12_435), (1.0, 3_846)]);
    // Read alone, a9a.t stops at index 122; forcing 123 features lines it up.
    let path = data_dir().join("libsvm/a9a.t.gz");
    assert_eq!(
        libsvm::load(&path, &LibsvmOptions::default())
            .unwrap()
            .n_features(),
        122
    );
    let forced = LibsvmOptions {
        n_features: Some(123),
        ..Default::default()
    };
    assert_eq!(libsvm::load(&path, &forced).unwrap().n_features(), 123);
}

#[test]
fn other_libsvm_files_match_the_readme() {
    let w8a = shared("w8a").train;
    assert_eq!(
        (w8a.len(), w8a.n_features(), w8a.design.nnz()),
        (49_749, 300, 579_586)
    );
    assert_eq!(label_counts(&w8a), vec![(-1.0, 48_270), (1.0, 1_479)]);
    let Design::Sparse(m) = &w8a.design else {
        panic!("LIBSVM loads sparse")
    };
    let empty_rows = (0..m.rows()).filter(|&i| m.row(i).0.is_empty()).count();
    assert_eq!(empty_rows, 4_203);
    let reuters = shared("reuters");
    let (tr, te) = (reuters.train, reuters.test.unwrap());
    assert_eq!(
        (tr.len(), tr.n_features(), tr.design.nnz()),
        (7_770, 8_315, 339_837)
    );
    assert_eq!(label_counts(&tr), vec![(-1.0, 7_232), (1.0, 538)]);
    assert_eq!(
        (te.len(), te.n_features(), te.design.nnz()),
        (3_299, 8_315, 136_821)
    );
    let heart = shared("heart_scale").train;
    assert_eq!(
        (heart.len(), heart.n_features(), heart.design.nnz()),
        (270, 13, 3_378)
    );
    let diabetes = shared("diabetes_scale").train;
    assert_eq!(
        (diabetes.len(), diabetes.n_features(), diabetes.design.nnz()),
        (768, 8, 6_135)
    );
    assert_eq!(label_counts(&diabetes), vec![(-1.0, 268), (1.0, 500)]);
}

#[test]
fn mnist_files_match_the_readme() {
    let test = shared("mnist_test").train;
    assert_eq!((test.len(), test.n_features()), (10_000, 784));
    let counts: Vec<usize> = label_counts(&test).into_iter().map(|(_, c)| c).collect();
    assert_eq!(
        counts,
        vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    assert_eq!(
        &test.labels[..10],
        &[7.0, 2.0, 1.0, 0.0, 4.0, 1.0, 4.0, 9.0, 5.0, 9.0]
    );
    let pixels = test.design.to_dense();
    let n = pixels.values().len() as f64;
    let mean = pixels.values().iter().map(|v| v / 255.0).sum::<f64>() / n;
    let sd = (pixels
        .values()
        .iter()
        .map(|v| (v / 255.0 - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    assert!((mean - 0.1325).abs() < 5e-5, "mean {mean}");
    assert!((sd - 0.3105).abs() < 5e-5, "sd {sd}");
    let five_k = shared("mnist_5k").train;
    assert_eq!((five_k.len(), five_k.n_features()), (5_000, 784));
    assert!(label_counts(&five_k).iter().all(|&(_, c)| c == 500));
    assert!(
        five_k
            .design
            .to_dense()
            .values()
            .iter()
            .all(|&v| (0.0..=255.0).contains(&v))
    );
}

#[test]
fn sklearn_csv_files_match_the_readme() {
    let digits = shared("digits").train;
    assert_eq!((digits.len(), digits.n_features()), (1_797, 64));
    let counts: Vec<usize> = label_counts(&digits).into_iter().map(|(_, c)| c).collect();
    assert_eq!(
        counts,
        vec![178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    );
    let bc = shared("breast_cancer").train;
    assert_eq!((bc.len(), bc.n_features()), (569, 30));
    assert_eq!(label_counts(&bc), vec![(0.0, 212), (1.0, 357)]);
    assert_eq!(bc.design.dense_row(0)[0], 17.99);
}

fn small_dataset() -> Dataset {
    let values = vec![
        0.0, 1.5, 0.0, -2.25, 3.0, 0.0, 0.0, 0.0, 0.0, 7.0, 0.125, 255.0,
    ];
    Dataset::new(
        Design::Dense(bilevel::data::DenseMatrix::new(4, 3, values).unwrap()),
        vec![1.0, -1.0, 1.0, 0.0],
    )
    .unwrap()
}

fn tmp(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    (dir, path)
}

#[test]
fn every_format_round_trips_through_its_writer() {
    let ds = small_dataset();
    for gzip in [false, true] {
        let (_d, p) = tmp("x.svm");
        libsvm::save(&ds, &p, gzip).unwrap();
        let back = libsvm::load(
            &p,
            &LibsvmOptions {
                n_features: Some(3),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(back.design.to_dense(), ds.design.to_dense());
        assert_eq!(back.labels, ds.labels);

        let (_d, p) = tmp("x.csv");
        csv::save(&ds, &p, gzip).unwrap();
        assert_eq!(csv::load(&p, &CsvOptions::default()).unwrap(), ds);
    }
    // bzip2 is detected by magic bytes too.
    let (_d, p) = tmp("x.bz2");
    let text = libsvm::to_string(&ds, false);
    let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    std::io::Write::write_all(&mut enc, text.as_bytes()).unwrap();
    std::fs::write(&p, enc.finish().unwrap()).unwrap();
    let back = libsvm::load(&p, &LibsvmOptions::default()).unwrap();
    assert_eq!(back.design.to_dense(), ds.design.to_dense());

    let (_d, images) = tmp("img-idx3-ubyte.gz");
    let labels = images.with_file_name("lab-idx1-ubyte.gz");
    let ds_u8 = Dataset::new(ds.design.clone(), vec![1.0, 0.0, 9.0, 3.0]).unwrap();
    let mut pixels = ds_u8.clone();
    if let Design::Dense(m) = &mut pixels.design {
        for v in m.values_mut() {
            *v = v.abs().round();
        }
    }
    idx::save_u8(&pixels, &images, &labels, true).unwrap();
    assert_eq!(idx::load(&images, &labels).unwrap(), pixels);
    assert!(idx::save_u8(&ds, &images, &labels, false).is_err()); // -2.25 is no byte

    let (_d, x) = tmp("x.npy");
    let y = x.with_file_name("y.npy");
    npy::save(&ds, &x, &y).unwrap();
    assert_eq!(npy::load(&x, &y).unwrap(), ds);
}

#[test]
fn file_level_errors_name_the_file() {
    let (_d, p) = tmp("broken.svm.gz");
    let mut gz = Vec::new();
    {
        let mut enc = flate2::write::GzEncoder::new(&mut gz, flate2::Compression::default());
        std::io::Write::write_all(&mut enc, b"1 1:1\n1 2:oops\n").unwrap();
    }
    std::fs::write(&p, &gz).unwrap();
    let err = libsvm::load(&p, &LibsvmOptions::default()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("broken.svm.gz") && text.contains("line 2"),
        "{text}"
    );
    // A truncated gzip stream is a data error at a byte offset, not a panic.
    std::fs::write(&p, &gz[..gz.len() / 2]).unwrap();
    let err = libsvm::load(&p, &LibsvmOptions::default()).unwrap_err();
    assert!(err.to_string().contains("byte offset"), "{err}");
    // A missing file is an I/O error naming the path.
    let err = csv::load(&p.with_file_name("missing.csv"), &CsvOptions::default()).unwrap_err();
    assert!(err.to_string().contains("missing.csv"), "{err}");
    // MNIST images with a labels file of another length.
    let (_d, images) = tmp("i-idx3-ubyte");
    let labels = images.with_file_name("l-idx1-ubyte");
    std::fs::write(&images, idx::encode_u8(&[2, 1, 1], &[0, 1])).unwrap();
    std::fs::write(&labels, idx::encode_u8(&[3], &[0, 1, 2])).unwrap();
    let err = idx::load(&images, &labels).unwrap_err();
    assert!(err.to_string().contains("3 labels for 2 images"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = libsvm::parse(&bytes, "p", &LibsvmOptions::default());
        let _ = csv::parse(&bytes, "p", &CsvOptions::default());
        let _ = idx::parse(&bytes, "p");
        let _ = npy::parse(&bytes, "p");
        let _ = bilevel::data::decompress(bytes.clone(), "p");
    }

    #[test]
    fn parsers_never_panic_on_near_valid_input(
        header in proptest::collection::vec(any::<u8>(), 0..16),
        text in "[-+0-9.:eE qid#,\n\r\t]{0,200}",
    ) {
        let _ = libsvm::parse(text.as_bytes(), "p", &LibsvmOptions::default());
        let _ = csv::parse(text.as_bytes(), "p", &CsvOptions { header: true, ..Default::default() });
        let mut idx_bytes = vec![0, 0, 8, 2];
        idx_bytes.extend_from_slice(&header);
        let _ = idx::parse(&idx_bytes, "p");
        let mut npy_bytes = b"\x93NUMPY\x01\x00".to_vec();
        npy_bytes.extend_from_slice(&(text.len() as u16).to_le_bytes());
        npy_bytes.extend_from_slice(text.as_bytes());
        npy_bytes.extend_from_slice(&header);
        let _ = npy::parse(&npy_bytes, "p");
    }

    #[test]
    fn libsvm_round_trips_random_sparse_rows(
        rows in proptest::collection::vec(
            (-3i32..4, proptest::collection::btree_map(0u32..50, -1e3f64..1e3, 0..8)),
            1..20,
        )
    ) {
        let text: String = rows.iter().map(|(label, feats)| {
            let mut line = label.to_string();
            for (j, v) in feats {
                line.push_str(&format!(" {}:{}", j + 1, v));
            }
            line + "\n"
        }).collect();
        let opts = LibsvmOptions { n_features: Some(50), ..Default::default() };
        let ds = libsvm::parse(text.as_bytes(), "p", &opts).unwrap();
        prop_assert_eq!(ds.len(), rows.len());
        let again = libsvm::parse(libsvm::to_string(&ds, false).as_bytes(), "p", &opts).unwrap();
        prop_assert_eq!(again, ds);
    }
}
