//! One client connection, as the service sees it. The service is written
//! against this trait so that the same code serves a UNIX socket and an
//! in-process exchange of bytes.

use std::io;

/// A client connection.
pub trait Connection {
    /// Waits until input is available (or the peer closed), then says how
    /// many bytes are waiting, without consuming them. The flush protocol
    /// uses this to tell a master trigger (two bytes or fewer) from a
    /// request.
    fn wait_and_peek(&mut self) -> io::Result<usize>;
    /// Reads up to `buf.len()` bytes; 0 means end of input.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes all of `buf` and pushes it to the peer.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
}

/// A connection whose whole input is known in advance, as when the client
/// sends one request in one write and waits for the reply.
#[derive(Debug, Clone, Default)]
pub struct MemoryConnection {
    input: Vec<u8>,
    position: usize,
    /// Everything the server wrote.
    pub output: Vec<u8>,
}

impl MemoryConnection {
    pub fn new(input: &[u8]) -> MemoryConnection {
        MemoryConnection { input: input.to_vec(), position: 0, output: Vec::new() }
    }
}

impl Connection for MemoryConnection {
    fn wait_and_peek(&mut self) -> io::Result<usize> {
        Ok(self.input.len() - self.position)
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.input.len() - self.position);
        buf[..n].copy_from_slice(&self.input[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.output.extend_from_slice(buf);
        Ok(())
    }
}
