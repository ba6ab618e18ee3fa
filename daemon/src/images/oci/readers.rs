//! The readers a layer's bytes go through: out of a tar member, hashed
//! as they pass, decompressed (gzip, zstd) and hashed again.

use super::*;

/// Reads a member of an archive by position, so that several can be open
/// at once on one file descriptor.
pub(super) struct MemberReader {
    pub(super) file: Arc<File>,
    pub(super) pos: u64,
    pub(super) end: u64,
}

impl Read for MemberReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends inside a member",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Hashes and counts what passes through.
pub(super) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub(super) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Reads what is left, then gives the digest, the byte count and the reader.
    pub(super) fn finish(mut self) -> io::Result<(Digest, u64, R)> {
        io::copy(&mut self, &mut io::sink())?;
        let digest = Digest {
            hex: hex(&self.hasher.finalize()),
        };
        Ok((digest, self.count, self.inner))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// The decompressor of one layer, over the hashed blob.
pub(super) enum Decoder {
    None(HashingReader<Blob>),
    Gzip(MultiGzDecoder<HashingReader<Blob>>),
    Zstd(Box<ZstdFrames<HashingReader<Blob>>>),
}

impl Decoder {
    pub(super) fn into_inner(self) -> HashingReader<Blob> {
        match self {
            Decoder::None(r) => r,
            Decoder::Gzip(d) => d.into_inner(),
            Decoder::Zstd(d) => d.source.into_inner(),
        }
    }
}

impl Read for Decoder {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::None(r) => r.read(buf),
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
        }
    }
}

/// A zstd stream of any number of frames (ruzstd decodes one frame at a
/// time and leaves the sequence, and skippable frames, to the caller).
pub(super) struct ZstdFrames<R: Read> {
    source: BufReader<R>,
    decoder: FrameDecoder,
    in_frame: bool,
}

impl<R: Read> ZstdFrames<R> {
    pub(super) fn new(source: R) -> Self {
        ZstdFrames {
            source: BufReader::new(source),
            decoder: FrameDecoder::new(),
            in_frame: false,
        }
    }
}

impl<R: Read> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.in_frame {
                if self.decoder.can_collect() > 0 {
                    return self.decoder.read(buf);
                }
                if !self.decoder.is_finished() {
                    self.decoder
                        .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBlocks(1))
                        .map_err(io::Error::other)?;
                    continue;
                }
                self.in_frame = false;
            }
            if self.source.fill_buf()?.is_empty() {
                return Ok(0);
            }
            match self.decoder.reset(&mut self.source) {
                Ok(()) => self.in_frame = true,
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped = io::copy(
                        &mut (&mut self.source).take(u64::from(length)),
                        &mut io::sink(),
                    )?;
                    if skipped != u64::from(length) {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "zstd stream ends inside a skippable frame",
                        ));
                    }
                }
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }
}

/// A layer as an uncompressed tar stream, hashed on both sides of the
/// decompressor.
pub(crate) struct LayerReader {
    pub(super) layer: Layer,
    pub(super) decoded: HashingReader<Decoder>,
}

impl std::fmt::Debug for LayerReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerReader")
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

impl Read for LayerReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.decoded.read(buf)
    }
}

impl LayerReader {
    /// A layer as an uncompressed tar over its blob, wherever the blob
    /// comes from (a layout, an archive, a registry's response).
    pub(crate) fn over(layer: &Layer, blob: Blob) -> LayerReader {
        // One byte past the size is enough to tell a longer blob.
        let blob: Blob = Box::new(blob.take(layer.size.saturating_add(1)));
        let raw = HashingReader::new(blob);
        let decoder = match layer.compression {
            Compression::None => Decoder::None(raw),
            Compression::Gzip => Decoder::Gzip(MultiGzDecoder::new(raw)),
            Compression::Zstd => Decoder::Zstd(Box::new(ZstdFrames::new(raw))),
        };
        LayerReader {
            layer: layer.clone(),
            decoded: HashingReader::new(decoder),
        }
    }

    /// Reads what the tar reader left (end-of-archive padding), then checks
    /// the blob's size and digest and the uncompressed digest (diff_id).
    pub(crate) fn finish(self) -> Result<(), OciError> {
        let layer = self.layer;
        let what = format!("layer {}", layer.index);
        let corrupt = |e: io::Error| invalid(format!("{what} ({}): {e}", layer.digest));
        let (diff_id, _, decoder) = self.decoded.finish().map_err(corrupt)?;
        let (digest, size, _) = decoder.into_inner().finish().map_err(corrupt)?;
        if size != layer.size {
            return Err(OciError::Mismatch {
                what,
                digest: layer.digest,
                expected: format!("{} bytes", layer.size),
                actual: size_found(size, layer.size),
            });
        }
        if digest != layer.digest {
            return Err(OciError::Mismatch {
                what,
                digest: layer.digest,
                expected: "that digest".to_string(),
                actual: digest.to_string(),
            });
        }
        if diff_id != layer.diff_id {
            return Err(OciError::Mismatch {
                what: format!("{what} uncompressed"),
                digest: layer.digest,
                expected: format!("diff_id {}", layer.diff_id),
                actual: diff_id.to_string(),
            });
        }
        Ok(())
    }
}
