//! Omniglot (Lake et al. 2015) in its standard layout: `ROOT/<alphabet>/<character>/<image>.png`
//! (the `images_background` and `images_evaluation` folders of the official release are two
//! such roots). Each character folder is one class; classes are numbered in sorted order of
//! (alphabet, character), images in sorted file-name order, so a load is reproducible.
//!
//! Each PNG (any colour type or bit depth) is turned to grey (the mean of its colour channels,
//! alpha ignored), shrunk to `size × size` by averaging the source pixels that fall in each
//! target pixel (a box filter), and stored as ink in [0, 1]: 1 − grey / 255, so that Omniglot's
//! black strokes on white are 1 on 0, like MNIST.

use std::path::{Path, PathBuf};

use super::{Dataset, DenseMatrix, Design, data_error, read_file};
use crate::core::error::{Error, Result};

/// The largest side accepted for a source image (the official images are 105 × 105).
const MAX_SIDE: u32 = 4096;

/// Omniglot images with their class of each row and the class names (`alphabet/character`).
#[derive(Clone, Debug)]
pub struct LabelledImages {
    /// One row per image, `size²` ink values, labels = class indices.
    pub dataset: Dataset,
    /// `alphabet/character` of each class.
    pub class_names: Vec<String>,
}

/// Loads every character of every alphabet under each of `roots`, images shrunk to
/// `size × size`.
pub fn load(roots: &[PathBuf], size: usize) -> Result<LabelledImages> {
    if size == 0 || size > MAX_SIDE as usize {
        return Err(Error::InvalidConfig {
            field: "image_size".into(),
            reason: format!("must be in 1..={MAX_SIDE}, got {size}"),
        });
    }
    let mut values = Vec::new();
    let mut labels = Vec::new();
    let mut class_names = Vec::new();
    for root in roots {
        let alphabets = sorted_dirs(root)?;
        if alphabets.is_empty() {
            return Err(data_error(
                &root.display().to_string(),
                "folder",
                "no alphabet folders: expected ROOT/<alphabet>/<character>/<image>.png",
            ));
        }
        for alphabet in alphabets {
            for character in sorted_dirs(&alphabet)? {
                let images = sorted_pngs(&character)?;
                if images.is_empty() {
                    return Err(data_error(
                        &character.display().to_string(),
                        "folder",
                        "a character folder holds no .png images",
                    ));
                }
                let class = class_names.len();
                class_names.push(format!(
                    "{}/{}",
                    file_name(&alphabet),
                    file_name(&character)
                ));
                for image in images {
                    values.extend(decode_ink(&image, size)?);
                    labels.push(class as f64);
                }
            }
        }
    }
    let rows = labels.len();
    let design = DenseMatrix::new(rows, size * size, values)?;
    Ok(LabelledImages {
        dataset: Dataset::new(Design::Dense(design), labels)?,
        class_names,
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn listing(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        paths.push(entry.path());
    }
    paths.sort();
    Ok(paths)
}

fn sorted_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(listing(dir)?.into_iter().filter(|p| p.is_dir()).collect())
}

fn sorted_pngs(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(listing(dir)?
        .into_iter()
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|e| e.to_string_lossy().eq_ignore_ascii_case("png"))
        })
        .collect())
}

/// One PNG as `size²` ink values (see the module docs).
pub fn decode_ink(path: &Path, size: usize) -> Result<Vec<f64>> {
    let name = path.display().to_string();
    let bytes = read_file(path)?;
    let corrupt = |e: png::DecodingError| data_error(&name, "PNG stream", e.to_string());
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(corrupt)?;
    let (width, height) = (reader.info().width, reader.info().height);
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(data_error(
            &name,
            "PNG header",
            format!("image of {width} × {height} pixels (accepted: 1 to {MAX_SIDE} a side)"),
        ));
    }
    let mut buffer = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buffer).map_err(corrupt)?;
    let samples = info.color_type.samples();
    let colours = match info.color_type {
        png::ColorType::GrayscaleAlpha | png::ColorType::Rgba => samples - 1,
        _ => samples,
    };
    let (width, height) = (info.width as usize, info.height as usize);
    let mut sums = vec![0.0; size * size];
    let mut counts = vec![0usize; size * size];
    for y in 0..height {
        let line = &buffer[y * info.line_size..];
        let ty = y * size / height;
        for x in 0..width {
            let pixel = &line[x * samples..x * samples + colours];
            let grey = pixel.iter().map(|&v| f64::from(v)).sum::<f64>() / colours as f64;
            let t = ty * size + x * size / width;
            sums[t] += 1.0 - grey / 255.0;
            counts[t] += 1;
        }
    }
    // A target pixel that no source pixel lands in (only when upscaling) copies its nearest
    // source pixel.
    let mut ink = vec![0.0; size * size];
    for ty in 0..size {
        for tx in 0..size {
            let t = ty * size + tx;
            ink[t] = if counts[t] > 0 {
                sums[t] / counts[t] as f64
            } else {
                let (sy, sx) = (ty * height / size, tx * width / size);
                let s = (sy * size / height) * size + sx * size / width;
                sums[s] / counts[s].max(1) as f64
            };
        }
    }
    Ok(ink)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a PNG of the given colour type and depth; `pixel(x, y)` is the grey level 0–255.
    fn write_png(
        path: &Path,
        width: u32,
        height: u32,
        colour: png::ColorType,
        pixel: impl Fn(u32, u32) -> u8,
    ) {
        let file = std::fs::File::create(path).unwrap();
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width, height);
        encoder.set_color(colour);
        let bits = if colour == png::ColorType::Indexed {
            png::BitDepth::One
        } else {
            png::BitDepth::Eight
        };
        encoder.set_depth(bits);
        if colour == png::ColorType::Indexed {
            encoder.set_palette(vec![0, 0, 0, 255, 255, 255]);
        }
        let mut writer = encoder.write_header().unwrap();
        let mut data = Vec::new();
        for y in 0..height {
            match colour {
                png::ColorType::Indexed => {
                    // One bit per pixel, most significant first: 1 = white (palette entry 1).
                    let mut row = vec![0u8; width.div_ceil(8) as usize];
                    for x in 0..width {
                        if pixel(x, y) > 127 {
                            row[(x / 8) as usize] |= 0x80 >> (x % 8);
                        }
                    }
                    data.extend(row);
                }
                png::ColorType::Rgb => {
                    for x in 0..width {
                        data.extend([pixel(x, y); 3]);
                    }
                }
                _ => {
                    for x in 0..width {
                        data.push(pixel(x, y));
                    }
                }
            }
        }
        writer.write_image_data(&data).unwrap();
    }

    /// Two alphabets, three characters, two or three images each, in three PNG flavours: a
    /// black left half on white (ink 1 on the left half).
    fn tree(root: &Path) {
        let half = |x: u32, _y: u32| if x < 5 { 0 } else { 255 };
        for (alphabet, characters) in [("Latin", &["b_char", "a_char"][..]), ("Greek", &["alpha"])]
        {
            for character in characters {
                let dir = root.join(alphabet).join(character);
                std::fs::create_dir_all(&dir).unwrap();
                write_png(&dir.join("01.png"), 10, 10, png::ColorType::Grayscale, half);
                write_png(&dir.join("02.PNG"), 10, 10, png::ColorType::Rgb, half);
                if *character != "alpha" {
                    write_png(&dir.join("03.png"), 10, 10, png::ColorType::Indexed, half);
                }
                std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
            }
        }
    }

    #[test]
    fn loads_the_standard_layout_in_sorted_order() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path());
        let loaded = load(&[dir.path().to_path_buf()], 5).unwrap();
        assert_eq!(
            loaded.class_names,
            ["Greek/alpha", "Latin/a_char", "Latin/b_char"]
        );
        assert_eq!(
            loaded.dataset.labels,
            [0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0]
        );
        assert_eq!(loaded.dataset.n_features(), 25);
        // 10 → 5: each target pixel averages 2 × 2 sources; the left 2.5 columns are ink.
        for i in 0..loaded.dataset.len() {
            let row = loaded.dataset.design.dense_row(i);
            for y in 0..5 {
                assert_eq!(
                    &row[y * 5..y * 5 + 5],
                    &[1.0, 1.0, 0.5, 0.0, 0.0],
                    "image {i}"
                );
            }
        }
    }

    #[test]
    fn bad_trees_and_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = load(&[dir.path().join("nope")], 28).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
        let empty = load(&[dir.path().to_path_buf()], 28).unwrap_err();
        assert!(empty.to_string().contains("no alphabet folders"), "{empty}");
        let character = dir.path().join("A").join("c1");
        std::fs::create_dir_all(&character).unwrap();
        let no_images = load(&[dir.path().to_path_buf()], 28).unwrap_err();
        assert!(
            no_images.to_string().contains("no .png images"),
            "{no_images}"
        );
        std::fs::write(character.join("1.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
        let corrupt = load(&[dir.path().to_path_buf()], 28).unwrap_err();
        assert!(corrupt.to_string().contains("1.png"), "{corrupt}");
        assert!(load(&[dir.path().to_path_buf()], 0).is_err());
    }

    #[test]
    fn upscaling_fills_every_pixel() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dot.png");
        write_png(&path, 2, 2, png::ColorType::Grayscale, |x, y| {
            if x == 0 && y == 0 { 0 } else { 255 }
        });
        let ink = decode_ink(&path, 4).unwrap();
        assert_eq!(
            ink,
            [
                1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
            ]
        );
    }
}
