//! The IDX format of MNIST (and Fashion-MNIST, KMNIST): a typed n-dimensional array.
//!
//! Layout, all integers big-endian: bytes 0–1 are zero; byte 2 is the element type (`0x08`
//! u8, `0x09` i8, `0x0B` i16, `0x0C` i32, `0x0D` f32, `0x0E` f64); byte 3 the number of
//! dimensions d ≥ 1; then d `u32` sizes; then the elements in C order. MNIST images are
//! `0x00000803` (u8, 3 dimensions: n × 28 × 28), labels `0x00000801` (u8, n).
//!
//! The reader checks the magic, the type code, the dimensions (non-zero rank, no overflow), that
//! the data is complete (a truncated file reports the byte offset where data runs out), and that
//! nothing follows it. Files may be raw or gzip/bzip2-compressed.

use std::path::Path;

use super::{Dataset, DenseMatrix, Design, data_error, read_file};
use crate::core::error::Result;

/// A decoded IDX array: its dimensions and its elements converted to `f64`, in C order.
#[derive(Clone, Debug, PartialEq)]
pub struct IdxArray {
    /// Sizes of each dimension.
    pub dims: Vec<usize>,
    /// Elements, C order.
    pub data: Vec<f64>,
}

/// Element type codes.
fn element_size(code: u8) -> Option<usize> {
    match code {
        0x08 | 0x09 => Some(1),
        0x0B => Some(2),
        0x0C | 0x0D => Some(4),
        0x0E => Some(8),
        _ => None,
    }
}

/// Parses IDX bytes (already decompressed); `name` labels errors.
pub fn parse(bytes: &[u8], name: &str) -> Result<IdxArray> {
    if bytes.len() < 4 {
        return Err(data_error(
            name,
            "byte offset 0",
            format!("too short for an IDX header ({} bytes)", bytes.len()),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(data_error(
            name,
            "byte offset 0",
            format!(
                "bad IDX magic {:02x}{:02x}{:02x}{:02x}: the first two bytes must be zero",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    let code = bytes[2];
    let Some(size) = element_size(code) else {
        return Err(data_error(
            name,
            "byte offset 2",
            format!("unknown IDX element type 0x{code:02x}"),
        ));
    };
    let ndims = bytes[3] as usize;
    if ndims == 0 {
        return Err(data_error(
            name,
            "byte offset 3",
            "IDX array with 0 dimensions",
        ));
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(data_error(
            name,
            format!("byte offset {}", bytes.len()),
            format!("truncated header: {ndims} dimensions need {header} bytes"),
        ));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|k| {
            let o = 4 + 4 * k;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|c| c.checked_mul(size).map(|b| (c, b)));
    let Some((count, data_bytes)) = count else {
        return Err(data_error(
            name,
            "byte offset 4",
            format!("dimensions {dims:?} overflow"),
        ));
    };
    let available = bytes.len() - header;
    if available < data_bytes {
        return Err(data_error(
            name,
            format!("byte offset {}", bytes.len()),
            format!(
                "truncated: dimensions {dims:?} need {data_bytes} bytes of data after the \
                 {header}-byte header, found {available}"
            ),
        ));
    }
    if available > data_bytes {
        return Err(data_error(
            name,
            format!("byte offset {}", header + data_bytes),
            format!(
                "{} unexpected bytes after the data of dimensions {dims:?}",
                available - data_bytes
            ),
        ));
    }
    let raw = &bytes[header..];
    let data: Vec<f64> = match code {
        0x08 => raw.iter().map(|&b| f64::from(b)).collect(),
        0x09 => raw.iter().map(|&b| f64::from(b as i8)).collect(),
        0x0B => raw
            .chunks_exact(2)
            .map(|c| f64::from(i16::from_be_bytes([c[0], c[1]])))
            .collect(),
        0x0C => raw
            .chunks_exact(4)
            .map(|c| f64::from(i32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        0x0D => raw
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => raw
            .chunks_exact(8)
            .map(|c| f64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
    };
    debug_assert_eq!(data.len(), count);
    // NaN or ±∞ in a float file would surface much later as a numerical failure far from its
    // cause (CSV and LIBSVM refuse them too).
    if let Some(k) = data.iter().position(|v| !v.is_finite()) {
        let width: usize = match code {
            0x08 | 0x09 => 1,
            0x0B => 2,
            0x0C | 0x0D => 4,
            _ => 8,
        };
        return Err(data_error(
            name,
            format!("byte offset {}", header + k * width),
            format!("element {k} is not finite ({})", data[k]),
        ));
    }
    Ok(IdxArray { dims, data })
}

/// Reads one IDX file (raw or compressed).
pub fn load_array(path: &Path) -> Result<IdxArray> {
    let bytes = read_file(path)?;
    parse(&bytes, &path.display().to_string())
}

/// Reads an images file (n × …) and a labels file (n) into a dense dataset with one row per
/// image (the trailing dimensions flattened, C order). Pixel values are kept as stored
/// (0–255 for MNIST).
pub fn load(images: &Path, labels: &Path) -> Result<Dataset> {
    let img = load_array(images)?;
    let lab = load_array(labels)?;
    let (img_name, lab_name) = (images.display().to_string(), labels.display().to_string());
    if img.dims.len() < 2 {
        return Err(data_error(
            &img_name,
            "byte offset 3",
            format!(
                "an images file needs at least 2 dimensions, found {:?}",
                img.dims
            ),
        ));
    }
    if lab.dims.len() != 1 {
        return Err(data_error(
            &lab_name,
            "byte offset 3",
            format!("a labels file has 1 dimension, found {:?}", lab.dims),
        ));
    }
    if lab.dims[0] != img.dims[0] {
        return Err(data_error(
            &lab_name,
            "byte offset 4",
            format!(
                "{} labels for {} images in {img_name}",
                lab.dims[0], img.dims[0]
            ),
        ));
    }
    let rows = img.dims[0];
    let cols: usize = img.dims[1..].iter().product();
    let design = DenseMatrix::new(rows, cols, img.data)?;
    Dataset::new(Design::Dense(design), lab.data)
}

/// Encodes a u8 array as IDX bytes (type 0x08).
pub fn encode_u8(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// Encodes an f64 array as IDX bytes (type 0x0E).
pub fn encode_f64(dims: &[usize], data: &[f64]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x0E, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    for v in data {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

/// Writes a dataset whose features and labels are integers in 0..=255 as an IDX images file
/// (n × cols, u8) and a labels file (n, u8), gzip-compressed when `gzip`. Fails if a value does
/// not fit a u8.
pub fn save_u8(dataset: &Dataset, images: &Path, labels: &Path, gzip: bool) -> Result<()> {
    let dense = dataset.design.to_dense();
    let to_u8 = |v: f64, what: &str| -> Result<u8> {
        if v.fract() == 0.0 && (0.0..=255.0).contains(&v) {
            Ok(v as u8)
        } else {
            Err(data_error(
                &images.display().to_string(),
                "write",
                format!("{what} {v} does not fit an unsigned byte"),
            ))
        }
    };
    let pixels = dense
        .values()
        .iter()
        .map(|&v| to_u8(v, "pixel"))
        .collect::<Result<Vec<u8>>>()?;
    let labs = dataset
        .labels
        .iter()
        .map(|&v| to_u8(v, "label"))
        .collect::<Result<Vec<u8>>>()?;
    super::write_file(
        images,
        &encode_u8(&[dense.rows(), dense.cols()], &pixels),
        gzip,
    )?;
    super::write_file(labels, &encode_u8(&[labs.len()], &labs), gzip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Error;

    fn err(bytes: &[u8]) -> (String, String) {
        match parse(bytes, "t.idx").unwrap_err() {
            Error::Data {
                location, reason, ..
            } => (location, reason),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn refuses_non_finite_elements() {
        let (location, reason) = err(&encode_f64(&[2, 2], &[0.0, 1.0, f64::NAN, 3.0]));
        assert!(reason.contains("element 2 is not finite"), "{reason}");
        assert_eq!(location, format!("byte offset {}", 4 + 2 * 4 + 2 * 8));
        let mut f32s = vec![0, 0, 0x0D, 1, 0, 0, 0, 2];
        for v in [f32::INFINITY, 1.0] {
            f32s.extend_from_slice(&v.to_be_bytes());
        }
        assert!(err(&f32s).1.contains("element 0 is not finite"));
    }

    #[test]
    fn decodes_every_type() {
        let a = parse(&encode_u8(&[2, 3], &[1, 2, 3, 4, 5, 255]), "t").unwrap();
        assert_eq!(a.dims, vec![2, 3]);
        assert_eq!(a.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 255.0]);
        let b = parse(&encode_f64(&[2], &[0.5, -1e300]), "t").unwrap();
        assert_eq!(b.data, vec![0.5, -1e300]);
        let mut i32s = vec![0, 0, 0x0C, 1, 0, 0, 0, 1];
        i32s.extend_from_slice(&(-7i32).to_be_bytes());
        assert_eq!(parse(&i32s, "t").unwrap().data, vec![-7.0]);
    }

    #[test]
    fn rejects_malformed_headers_and_truncation() {
        let good = encode_u8(&[2, 2], &[1, 2, 3, 4]);
        let (loc, reason) = err(&good[..3]);
        assert_eq!(loc, "byte offset 0");
        assert!(reason.contains("too short"));
        let mut bad = good.clone();
        bad[0] = 1;
        assert!(err(&bad).1.contains("magic"));
        let mut bad = good.clone();
        bad[2] = 0x07;
        assert_eq!(
            err(&bad),
            (
                "byte offset 2".into(),
                "unknown IDX element type 0x07".into()
            )
        );
        let mut bad = good.clone();
        bad[3] = 0;
        assert!(err(&bad).1.contains("0 dimensions"));
        let (loc, reason) = err(&good[..10]);
        assert_eq!(loc, "byte offset 10");
        assert!(reason.contains("truncated header"), "{reason}");
        let (loc, reason) = err(&good[..14]);
        assert_eq!(loc, "byte offset 14");
        assert!(reason.contains("need 4 bytes of data"), "{reason}");
        let mut long = good.clone();
        long.push(9);
        let (loc, reason) = err(&long);
        assert_eq!(loc, "byte offset 16");
        assert!(reason.contains("unexpected bytes"), "{reason}");
        let huge = [
            0, 0, 8, 3, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
        ];
        let (_, reason) = err(&huge);
        assert!(
            reason.contains("overflow") || reason.contains("truncated"),
            "{reason}"
        );
    }
}
