//! A layer that stops right after its last entry's data (as Debian's umoci
//! 0.4.7 writes them) is read as if its padding were there; any other
//! early end is a layer cut short.

use super::*;

/// Where the tar stream stands, shared between [`TailReader`] and
/// [`apply_layer`], which knows where an entry's data begins and ends.
///
/// Why: umoci 0.4.7 (Debian's) never closes its tar writer, so a layer it
/// writes stops right after the last entry's data, without the zero
/// padding to the next 512-byte block nor the two end-of-archive blocks
/// (umoci issue #436). The layer's digests are computed over exactly those
/// bytes and `umoci unpack` accepts it, so this daemon does too: an end of
/// the stream exactly where the last entry's data ends is read as if the
/// padding were there, and an end at a block boundary between entries as
/// the end of the archive (the `tar` crate does that already). Any other
/// end is a layer cut short and is refused, naming where it ends.
#[derive(Debug)]
pub(super) struct Tail {
    /// Bytes of the stream read so far, supplied zeros included.
    pub(super) pos: Cell<u64>,
    /// Where the last entry read whole ends; `None` while an entry's data
    /// is being read.
    pub(super) data_end: Cell<Option<u64>>,
    /// Where the stream ended, and inside what, when it ended too early.
    pub(super) cut: Cell<Option<(u64, Cut)>>,
}

/// What a layer cut short ends inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cut {
    Data,
    Padding,
    Header,
}

const BLOCK: u64 = 512;

impl Default for Tail {
    fn default() -> Tail {
        Tail {
            pos: Cell::new(0),
            // The stream starts as if after an empty entry's data.
            data_end: Cell::new(Some(0)),
            cut: Cell::new(None),
        }
    }
}

impl Tail {
    pub(super) fn data_begins(&self) {
        self.data_end.set(None);
    }

    pub(super) fn data_ended(&self) {
        self.data_end.set(Some(self.pos.get()));
    }

    /// At the end of the stream: how many zeros to supply (padding the
    /// last entry's data to its block), or where it was cut.
    pub(super) fn at_end(&self) -> Result<u64, Cut> {
        let pos = self.pos.get();
        match self.data_end.get() {
            None => Err(Cut::Data),
            Some(_) if pos.is_multiple_of(BLOCK) => Ok(0),
            Some(end) if pos == end => Ok(BLOCK - pos % BLOCK),
            Some(end) if pos < end.div_ceil(BLOCK) * BLOCK => Err(Cut::Padding),
            Some(_) => Err(Cut::Header),
        }
    }
}

impl Cut {
    /// The error of a stream cut at `at`; `last` is the last entry read
    /// whole, `entry` the one whose data was being read.
    pub(super) fn error(self, at: u64, last: Option<&str>, entry: Option<&str>) -> io::Error {
        let inside = match (self, last, entry) {
            (Cut::Data, _, Some(e)) => format!("the data of {e:?}"),
            (Cut::Data, _, None) => "an entry's data".to_string(),
            (Cut::Padding, Some(l), _) => format!("the padding after {l:?}"),
            (Cut::Padding, None, _) => "the padding after an entry".to_string(),
            (Cut::Header, Some(l), _) => format!("the header after {l:?}"),
            (Cut::Header, None, _) => "the first header".to_string(),
        };
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the layer ends at byte {at}, inside {inside}: it is cut short"),
        )
    }
}

/// The layer stream under the tar reader: counts what it reads and, at
/// the end of the stream, supplies the padding or names the cut, as
/// [`Tail`] decides. The supplied zeros never reach the layer's hashes,
/// which are computed below this reader.
pub(super) struct TailReader<R> {
    pub(super) inner: R,
    pub(super) tail: Rc<Tail>,
    /// Zeros still to supply.
    pub(super) zeros: u64,
}

impl<R: Read> Read for TailReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = if self.zeros > 0 {
            let n = buf
                .len()
                .min(usize::try_from(self.zeros).unwrap_or(usize::MAX));
            buf[..n].fill(0);
            self.zeros -= n as u64;
            n
        } else {
            let n = self.inner.read(buf)?;
            if n == 0 {
                match self.tail.at_end() {
                    Ok(0) => return Ok(0),
                    Ok(zeros) => {
                        self.zeros = zeros;
                        return self.read(buf);
                    }
                    Err(cut) => {
                        let at = self.tail.pos.get();
                        self.tail.cut.set(Some((at, cut)));
                        return Err(cut.error(at, None, None));
                    }
                }
            }
            n
        };
        self.tail.pos.set(self.tail.pos.get() + n as u64);
        Ok(n)
    }
}
