//! `gongji serve --projection` with a projection host that never answers: payments do not
//! wait for the analysts' database.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::temp_dir;

/// A listening socket whose accept queue is full and never drained: the kernel drops further
/// SYNs, so a connection attempt to it gets no answer at all, like a host behind a firewall
/// that drops packets (not one that refuses). Dropping it closes the hole.
struct Blackhole {
    addr: SocketAddr,
    _fill: Vec<TcpStream>,
    _listener: tokio::net::TcpListener,
    _runtime: tokio::runtime::Runtime,
}

fn blackhole() -> Blackhole {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let guard = runtime.enter();
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    let listener = socket.listen(0).expect("listen"); // never accepted from
    let addr = listener.local_addr().expect("address");
    drop(guard);
    let mut fill = Vec::new();
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(stream) => fill.push(stream),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
            Err(e) => panic!("a full accept queue should drop SYNs, got {e}"),
        }
        assert!(fill.len() < 64, "the accept queue never filled");
    }
    Blackhole {
        addr,
        _fill: fill,
        _listener: listener,
        _runtime: runtime,
    }
}

/// The server under test, killed if the test fails before it is stopped, so a failure
/// leaves no process behind.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn request(addr: &str, head: &str, token: &str, body: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{head} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn serve_answers_at_once_when_the_projection_host_drops_packets() {
    // Proves `serve --projection` binds its listener and acknowledges a settlement within
    // seconds while its projection host never answers a connection attempt, exports
    // `gongji_projection_up 0`, and still stops promptly on SIGTERM.
    let hole = blackhole();
    let hole_addr = hole.addr;
    // The control: connecting to the hole hangs (it would pass vacuously if it refused).
    let attempt = Instant::now();
    let e = TcpStream::connect_timeout(&hole_addr, Duration::from_millis(300)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
    assert!(attempt.elapsed() >= Duration::from_millis(250));

    let dir = temp_dir("projection-unreachable", "serve");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_gongji"))
            .args(["serve", "--data", &dir.to_string_lossy(), "--listen", &addr])
            .args(["--projection", &format!("postgres://nobody@{hole_addr}/x")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starts"),
    );
    let healthz = loop {
        if TcpStream::connect(&addr).is_ok() {
            break request(&addr, "GET /healthz", "", "");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no listener after 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(healthz.starts_with("HTTP/1.1 200"), "{healthz}");
    let token = std::fs::read_to_string(dir.join("admin.token")).expect("token");
    let token = token.trim();
    let writes = [
        (
            "/v1/institutions",
            r#"{"msgid":"i1","fixmedins_code":"H1","fixmedins_name":"一院","fixmedins_type":"1","admdvs":"440106"}"#,
        ),
        (
            "/v1/persons",
            r#"{"msgid":"e1","psn_no":"P1","certno":"11010519491231002X","psn_name":"张三","insutype":"310","admdvs":"440106"}"#,
        ),
        (
            "/v1/settlements",
            r#"{"msgid":"s1","fixmedins_code":"H1","psn_no":"P1","medfee_sumamt":"100.00","fund_pay_sumamt":"60.00","acct_used_flag":"0"}"#,
        ),
    ];
    for (path, body) in writes {
        let reply = request(&addr, &format!("POST {path}"), token, body);
        assert!(reply.starts_with("HTTP/1.1 200"), "{path}: {reply}");
    }
    let acknowledged = started.elapsed();
    assert!(
        acknowledged < Duration::from_secs(3),
        "a settlement took {acknowledged:?} from start; the connect timeout is {:?}",
        gongji_pg::CONNECT_TIMEOUT
    );
    let metrics = request(&addr, "GET /metrics", "", "");
    assert!(metrics.contains("gongji_projection_up 0"), "{metrics}");

    let stopping = Instant::now();
    let _ = Command::new("kill").arg(server.0.id().to_string()).status();
    assert!(server.0.wait().unwrap().success());
    assert!(
        stopping.elapsed() < gongji_pg::CONNECT_TIMEOUT + Duration::from_secs(5),
        "shutdown waited {:?}",
        stopping.elapsed()
    );
    drop(hole);
    let _ = std::fs::remove_dir_all(&dir);
}
