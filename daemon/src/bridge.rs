//! Blocking readers and writers over async channels: the tar of a
//! snapshot is written and read by blocking code (the `tar` crate, file
//! I/O) while its bytes come from or go to an HTTP body.

use std::io::{self, Read, Write};

use bytes::Bytes;
use tokio::sync::mpsc;

/// Bytes written are sent as chunks of about [`ChannelWriter::CHUNK`].
/// For blocking threads only (`spawn_blocking`).
pub(crate) struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    /// Chunk size: large enough that a chunk costs little, small enough
    /// that memory stays flat.
    const CHUNK: usize = 256 * 1024;

    pub(crate) fn new(tx: mpsc::Sender<Bytes>) -> ChannelWriter {
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(Self::CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(Self::CHUNK),
        ));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the reader went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(Self::CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= Self::CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// Reads the chunks of a channel as one stream; an `Err` chunk is the
/// error of the read that meets it, the end of the channel the end of
/// the stream. For blocking threads only (`spawn_blocking`).
pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ChannelReader {
    pub(crate) fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> ChannelReader {
        ChannelReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(chunk) => self.current = chunk?,
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_go_through_whole_and_in_order() {
        let (tx, rx) = mpsc::channel(4);
        let writer = std::thread::spawn(move || {
            let mut w = ChannelWriter::new(tx);
            for i in 0..1000u32 {
                w.write_all(&i.to_le_bytes().repeat(300)).unwrap();
            }
            w.flush().unwrap();
        });
        let (rtx, rrx) = mpsc::channel(4);
        let mut rx = rx;
        let pump = std::thread::spawn(move || {
            while let Some(chunk) = rx.blocking_recv() {
                rtx.blocking_send(Ok(chunk)).unwrap();
            }
        });
        let mut got = Vec::new();
        ChannelReader::new(rrx).read_to_end(&mut got).unwrap();
        writer.join().unwrap();
        pump.join().unwrap();
        let want: Vec<u8> = (0..1000u32)
            .flat_map(|i| i.to_le_bytes().repeat(300))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn an_error_chunk_is_the_reads_error() {
        let (tx, rx) = mpsc::channel(4);
        tx.blocking_send(Ok(Bytes::from_static(b"ab"))).unwrap();
        tx.blocking_send(Err(io::Error::other("cut"))).unwrap();
        let mut r = ChannelReader::new(rx);
        let mut buf = [0u8; 8];
        assert_eq!(r.read(&mut buf).unwrap(), 2);
        assert_eq!(r.read(&mut buf).unwrap_err().to_string(), "cut");
    }
}
