//! The listener run in every pod (`netpol-trace lab serve`): accepts TCP connections on each
//! declared TCP port (writes a one-line greeting, then closes) and echoes datagrams on each UDP
//! port, so that probes and clients have something real to connect to.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::Path;

use super::error::{LabError, Result};
use super::plan::Protocol;

/// The greeting a TCP client reads: `netpol-trace lab <port>/TCP\n`.
pub fn greeting(port: u16) -> String {
    format!("netpol-trace lab {port}/TCP\n")
}

/// Binds every port, writes `ready_file` (if any) once all are bound, then serves forever.
pub fn serve(ports: &[(u16, Protocol)], ready_file: Option<&Path>) -> Result<()> {
    let mut workers = Vec::new();
    for &(port, protocol) in ports {
        let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        match protocol {
            Protocol::Tcp => {
                let listener = TcpListener::bind(addr)
                    .map_err(|e| LabError::io(format!("binding {port}/TCP"), e))?;
                workers.push(std::thread::spawn(move || serve_tcp(&listener, port)));
            }
            Protocol::Udp => {
                let socket = UdpSocket::bind(addr)
                    .map_err(|e| LabError::io(format!("binding {port}/UDP"), e))?;
                workers.push(std::thread::spawn(move || serve_udp(&socket)));
            }
            Protocol::Sctp => tracing::warn!(port, "SCTP ports get no listener"),
        }
    }
    if let Some(path) = ready_file {
        std::fs::write(path, b"ready\n")
            .map_err(|e| LabError::io(format!("writing {}", path.display()), e))?;
    }
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}

fn serve_tcp(listener: &TcpListener, port: u16) {
    let greeting = greeting(port);
    for stream in listener.incoming() {
        match stream {
            Ok(mut stream) => {
                let _ = stream.write_all(greeting.as_bytes());
            }
            Err(err) => tracing::warn!(port, %err, "accept failed"),
        }
    }
}

fn serve_udp(socket: &UdpSocket) {
    let mut buf = [0u8; 2048];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((len, peer)) => {
                let _ = socket.send_to(&buf[..len], peer);
            }
            Err(err) => tracing::warn!(%err, "receive failed"),
        }
    }
}
