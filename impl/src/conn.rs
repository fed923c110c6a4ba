//! One client connection, as the service sees it. The service is written
//! against this trait so that the same code serves a UNIX socket and an
//! in-process exchange of bytes.

use std::io;
use std::os::unix::net::UnixStream;
use std::time::Duration;

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
    /// Bounds how long [`Connection::wait_and_peek`] and
    /// [`Connection::read`] wait; a connection whose input is already all
    /// there has nothing to bound.
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let _ = timeout;
        Ok(())
    }
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
        MemoryConnection {
            input: input.to_vec(),
            position: 0,
            output: Vec::new(),
        }
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

/// A client on the flush server's UNIX-domain socket (`public/flush`).
#[derive(Debug)]
pub struct UnixConnection {
    stream: UnixStream,
}

impl UnixConnection {
    pub fn new(stream: UnixStream) -> UnixConnection {
        UnixConnection { stream }
    }
}

/// How many bytes [`UnixConnection::wait_and_peek`] looks at: enough to
/// tell a trigger (two bytes or fewer) from a request.
const PEEK_LEN: usize = 64;

impl Connection for UnixConnection {
    fn wait_and_peek(&mut self) -> io::Result<usize> {
        let mut buf = [0u8; PEEK_LEN];
        loop {
            match rustix::net::recv(&self.stream, &mut buf[..], rustix::net::RecvFlags::PEEK) {
                Ok((waiting, _)) => return Ok(waiting),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        io::Read::read(&mut self.stream, buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        io::Write::write_all(&mut self.stream, buf)?;
        io::Write::flush(&mut self.stream)
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_connection_peeks_without_consuming() {
        let (client, server) = UnixStream::pair().unwrap();
        let mut conn = UnixConnection::new(server);
        io::Write::write_all(&mut &client, b"W\0").unwrap();
        assert_eq!(conn.wait_and_peek().unwrap(), 2);
        let mut buf = [0u8; 8];
        assert_eq!(conn.read(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"W\0");
    }

    #[test]
    fn unix_connection_wait_is_bounded_by_the_read_timeout() {
        let (_client, server) = UnixStream::pair().unwrap();
        let mut conn = UnixConnection::new(server);
        conn.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        assert!(conn.wait_and_peek().is_err());
    }

    #[test]
    fn memory_connection_says_how_much_is_waiting() {
        let mut conn = MemoryConnection::new(b"abc");
        assert_eq!(conn.wait_and_peek().unwrap(), 3);
        let mut buf = [0u8; 2];
        assert_eq!(conn.read(&mut buf).unwrap(), 2);
        assert_eq!(conn.wait_and_peek().unwrap(), 1);
    }
}
