//! The kernel program, loaded for real, against real traffic in lab
//! namespaces.

use std::net::SocketAddr;

use crate::support::{
    lab::{in_fresh_netns, VethLab},
    require_privileges,
    session::Session,
    streams::rebuild,
    traffic::{exchange, pattern, request, serve_once},
};
use auditor::capture::flow_key;
use auditor_common::{Counter, SEGMENT_CAPTURE_MAX};

const PORT: u16 = 8080;

/// Runs one exchange per server address and checks that every payload byte
/// of both directions comes back from the records at the right offset.
fn assert_exchanges_recovered(session: &mut Session, servers: &[SocketAddr]) {
    let request_bytes = pattern(3_000, 1);
    let response = pattern(12_000, 2);
    let clients: Vec<SocketAddr> = servers
        .iter()
        .map(|&server| exchange(server, &request_bytes, &response))
        .collect();
    let records = session.records();
    let streams = rebuild(&records);
    for (&server, &client) in servers.iter().zip(&clients) {
        let upstream = &streams[&(client, server)];
        let downstream = &streams[&(server, client)];
        assert_eq!(
            upstream.contiguous(),
            request_bytes,
            "request bytes {client} -> {server}"
        );
        assert_eq!(
            downstream.contiguous(),
            response,
            "response bytes {server} -> {client}"
        );
        assert_eq!(
            upstream.bytes.len(),
            request_bytes.len(),
            "no byte beyond the request"
        );
        assert!(
            upstream.segments.iter().any(|s| s.flags.fin()),
            "the FIN is reported"
        );
    }
    let counters = session.counters();
    let copied: usize = records.iter().map(|r| r.data.len()).sum();
    assert_eq!(counters[&Counter::PayloadBytesCopied], copied as u64);
    assert_eq!(counters[&Counter::RecordsEmitted], records.len() as u64);
    assert_eq!(counters[&Counter::RingBufferFull], 0);
    assert!(counters[&Counter::PacketsSeen] >= counters[&Counter::SegmentsMatched]);
    assert!(counters[&Counter::SegmentsMatched] >= counters[&Counter::RecordsEmitted] / 4);
    let mut seen = std::collections::HashSet::new();
    for record in &records {
        let identity = (
            record.src,
            record.dst,
            record.seq,
            record.data_offset,
            record.flags,
            record.direction,
        );
        assert!(seen.insert(identity), "recorded twice: {record:?}");
    }
}

#[test]
#[ignore = "needs root"]
fn loopback_traffic_is_recovered_once_over_ipv4_and_ipv6() {
    require_privileges();
    in_fresh_netns(|| {
        let mut session = Session::start("lo", &[PORT]);
        let servers = [
            SocketAddr::new("127.0.0.1".parse().unwrap(), PORT),
            SocketAddr::new("::1".parse().unwrap(), PORT),
        ];
        assert_exchanges_recovered(&mut session, &servers);
    });
}

#[test]
#[ignore = "needs root"]
fn veth_traffic_is_recovered_in_both_directions_over_ipv4_and_ipv6() {
    require_privileges();
    let lab = VethLab::new();
    let (a_if, a_v4, a_v6) = (lab.a_if.clone(), lab.a_v4, lab.a_v6);
    let b_path = lab.b.name.clone();
    lab.a
        .spawn(move || {
            // The capture and the servers live in `a`; the clients in `b`.
            let mut session = Session::start(&a_if, &[PORT]);
            let request_bytes = pattern(3_000, 3);
            let response = pattern(12_000, 4);
            let mut pairs = Vec::new();
            for server_ip in [a_v4, a_v6] {
                let server = SocketAddr::new(server_ip, PORT);
                let listener = std::net::TcpListener::bind(server).unwrap();
                let server_side = serve_once(listener, request_bytes.len(), response.clone());
                let request_copy = request_bytes.clone();
                let client_ns = b_path.clone();
                let (answer, client) = std::thread::spawn(move || {
                    enter(&client_ns);
                    request(server, &request_copy)
                })
                .join()
                .unwrap();
                assert_eq!(server_side.join().unwrap(), request_bytes);
                assert_eq!(answer, response);
                pairs.push((server, client));
            }
            let streams = rebuild(&session.records());
            for (server, client) in pairs {
                assert_eq!(
                    streams[&(client, server)].contiguous(),
                    request_bytes,
                    "ingress bytes"
                );
                assert_eq!(
                    streams[&(server, client)].contiguous(),
                    response,
                    "egress bytes"
                );
            }
        })
        .join()
        .unwrap();
}

#[test]
#[ignore = "needs root"]
fn unwatched_ports_are_not_recorded_and_port_changes_apply_at_once() {
    require_privileges();
    in_fresh_netns(|| {
        let mut session = Session::start("lo", &[PORT]);
        let other = SocketAddr::new("127.0.0.1".parse().unwrap(), 9090);
        let small = pattern(100, 5);

        exchange(other, &small, &small);
        assert!(session.records().is_empty(), "port 9090 is not watched");

        session.capture.watch_port(9090).unwrap();
        let client = exchange(other, &small, &small);
        let records = session.records();
        assert!(records.iter().any(|r| r.src == client && r.data == small));
        assert!(records
            .iter()
            .all(|r| r.src.port() == 9090 || r.dst.port() == 9090));

        session.capture.unwatch_port(9090).unwrap();
        exchange(other, &small, &small);
        assert!(session.records().is_empty(), "port 9090 was unwatched");
    });
}

#[test]
#[ignore = "needs root"]
fn a_64_kib_write_is_truncated_explicitly_and_counted() {
    require_privileges();
    in_fresh_netns(|| {
        // Loopback's 64 KiB MTU turns one 64 KiB write into one segment.
        let mut session = Session::start("lo", &[PORT]);
        let body = pattern(64 * 1024, 6);
        let server = SocketAddr::new("127.0.0.1".parse().unwrap(), PORT);
        let client = exchange(server, &body, b"ok");
        let records = session.records();
        let big: Vec<_> = records
            .iter()
            .filter(|r| r.src == client && r.payload_len as usize > SEGMENT_CAPTURE_MAX)
            .collect();
        assert!(!big.is_empty(), "a segment larger than the capture cap");
        let payload_len = big[0].payload_len;
        let copied: usize = big
            .iter()
            .filter(|r| r.seq == big[0].seq)
            .map(|r| r.data.len())
            .sum();
        assert_eq!(copied, SEGMENT_CAPTURE_MAX);
        let last = big
            .iter()
            .filter(|r| r.seq == big[0].seq)
            .max_by_key(|r| r.data_offset)
            .unwrap();
        assert_eq!(
            last.uncopied_tail as usize,
            payload_len as usize - SEGMENT_CAPTURE_MAX
        );
        assert!(big
            .iter()
            .filter(|r| r.seq == big[0].seq && r.data_offset != last.data_offset)
            .all(|r| r.uncopied_tail == 0));
        let streams = rebuild(&records);
        assert_eq!(
            streams[&(client, server)].contiguous(),
            body[..SEGMENT_CAPTURE_MAX]
        );
        assert!(session.counters()[&Counter::RecordsTruncated] >= 1);
    });
}

#[test]
#[ignore = "needs root"]
fn a_16_kib_header_block_in_one_write_reaches_userspace_whole() {
    require_privileges();
    let lab = VethLab::new();
    let head = http_head_of(16 * 1024);
    let server = SocketAddr::new(lab.b_v4, PORT);
    let listener = lab
        .b
        .spawn(move || std::net::TcpListener::bind(server).unwrap())
        .join()
        .unwrap();
    let server_side = serve_once(
        listener,
        head.len(),
        b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
    );
    // The sender is in `a`, where the capture sees its GSO super-packets on egress.
    let a_if = lab.a_if.clone();
    let sent = head.clone();
    lab.a
        .spawn(move || {
            let mut session = Session::start(&a_if, &[PORT]);
            let (_, client) = request(server, &sent);
            let streams = rebuild(&session.records());
            assert_eq!(streams[&(client, server)].contiguous(), sent);
            assert_eq!(session.counters()[&Counter::RecordsTruncated], 0);
        })
        .join()
        .unwrap();
    assert_eq!(server_side.join().unwrap(), head);
}

#[test]
#[ignore = "needs root"]
fn a_closed_payload_gate_stops_copying_but_keeps_lengths_and_flags() {
    require_privileges();
    in_fresh_netns(|| {
        use std::io::{Read, Write};
        let mut session = Session::start("lo", &[PORT]);
        let server = SocketAddr::new("127.0.0.1".parse().unwrap(), PORT);
        let listener = std::net::TcpListener::bind(server).unwrap();
        let mut client = std::net::TcpStream::connect(server).unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        let client_addr = client.local_addr().unwrap();
        let mut send = |bytes: &[u8]| {
            client.write_all(bytes).unwrap();
            let mut sink = vec![0; bytes.len()];
            accepted.read_exact(&mut sink).unwrap();
        };
        send(b"before");
        let syn_seq = session
            .records()
            .iter()
            .find(|r| r.src == client_addr && r.flags.syn())
            .unwrap()
            .seq;

        let key = flow_key(client_addr, server);
        session.capture.close_payload(key, None).unwrap();
        send(b"while closed");
        let gated = session.records();
        assert_eq!(gated.len(), 1);
        assert!(gated[0].data.is_empty() && gated[0].gated);
        assert_eq!(gated[0].payload_len, 12);

        session.capture.open_payload(key).unwrap();
        send(b"open again");
        assert_eq!(session.records()[0].data, b"open again");

        // Closed until a sequence number inside the next write: copying
        // resumes there, mid-segment.
        let sent_so_far = (6 + 12 + 10) as u32;
        let resume = syn_seq.wrapping_add(1).wrapping_add(sent_so_far + 4);
        session.capture.close_payload(key, Some(resume)).unwrap();
        send(b"skipresumed");
        let partial = session.records();
        assert_eq!(partial[0].data, b"resumed");
        assert_eq!(partial[0].data_offset, 4);
        send(b"after");
        assert_eq!(
            session.records()[0].data,
            b"after",
            "the gate removed itself"
        );
    });
}

#[test]
#[ignore = "needs root"]
fn curl_exchange_over_veth_is_recovered() {
    require_privileges();
    let lab = VethLab::new();
    let server = SocketAddr::new(lab.a_v4, PORT);
    let response =
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello".to_vec();
    let (ready, listening) = std::sync::mpsc::channel();
    let a_if = lab.a_if.clone();
    let answer = response.clone();
    let capture_side = lab.a.spawn(move || {
        let mut session = Session::start(&a_if, &[PORT]);
        let listener = std::net::TcpListener::bind(server).unwrap();
        ready.send(()).unwrap();
        let (mut stream, client) = listener.accept().unwrap();
        let request = read_http_head(&mut stream);
        std::io::Write::write_all(&mut stream, &answer).unwrap();
        drop(stream);
        (session.records(), client, request)
    });
    listening.recv().unwrap();
    let output = lab
        .b
        .command("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            &format!("http://{server}/upgrade-auditor"),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, b"hello");
    let (records, client, request) = capture_side.join().unwrap();
    assert!(request.starts_with(b"GET /upgrade-auditor HTTP/1.1\r\n"));
    let streams = rebuild(&records);
    assert_eq!(streams[&(client, server)].contiguous(), request);
    assert_eq!(streams[&(server, client)].contiguous(), response);
}

#[test]
#[ignore = "needs root"]
fn transfers_are_byte_identical_with_and_without_the_program() {
    require_privileges();
    let lab = VethLab::new();
    let payload = pattern(4 << 20, 7);
    let server = SocketAddr::new(lab.a_v4, PORT);
    let transfer = |attached: bool| {
        let a_if = lab.a_if.clone();
        let listener = {
            lab.a
                .spawn(move || std::net::TcpListener::bind(server).unwrap())
                .join()
                .unwrap()
        };
        let payload_copy = payload.clone();
        let session = lab
            .a
            .spawn(move || attached.then(|| Session::start(&a_if, &[PORT])));
        let session = session.join().unwrap();
        let server_side = serve_once(listener, 1, payload_copy);
        let b = lab.b.name.clone();
        let (received, _) = std::thread::spawn(move || {
            enter(&b);
            request(server, b"x")
        })
        .join()
        .unwrap();
        server_side.join().unwrap();
        if let Some(session) = &session {
            assert!(
                session.counters()[&Counter::RecordsEmitted] > 0,
                "the program saw the transfer"
            );
        }
        received
    };
    assert_eq!(transfer(true), payload, "with the program attached");
    assert_eq!(transfer(false), payload, "without it");
}

fn enter(netns: &str) {
    let file = std::fs::File::open(format!("/run/netns/{netns}")).unwrap();
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
}

fn http_head_of(len: usize) -> Vec<u8> {
    let mut head = b"GET / HTTP/1.1\r\nHost: lab\r\nX-Padding: ".to_vec();
    let padding = len - head.len() - 4;
    head.extend(pattern(padding, 8));
    head.extend_from_slice(b"\r\n\r\n");
    head
}

fn read_http_head(stream: &mut std::net::TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        std::io::Read::read_exact(stream, &mut byte).unwrap();
        head.push(byte[0]);
    }
    head
}

#[test]
#[ignore = "needs root"]
fn vlan_tags_and_ipv6_extension_headers_are_followed_or_counted_as_skipped() {
    use crate::support::frames::{
        ethernet, ipv4, ipv6, RawSender, Tcp, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV4, ETH_P_IPV6,
        IPV6_DEST_OPTS, IPV6_HOP_BY_HOP,
    };
    require_privileges();
    let lab = VethLab::new();
    let a_if = lab.a_if.clone();
    lab.a
        .spawn(move || {
            // Frames sent through an AF_PACKET socket cross the egress hook
            // exactly as built, tags and all.
            let mut session = Session::start(&a_if, &[PORT]);
            let sender = RawSender::new(&a_if).unwrap();
            let (v4_src, v4_dst) = ([10, 231, 0, 1], [10, 231, 0, 2]);
            let v6_src = "fd00:231::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets();
            let v6_dst = "fd00:231::2"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets();
            let tcp = |seq, payload| Tcp::new(40_000, PORT, seq, payload);
            let followed: [(Vec<u8>, &[u8]); 4] = [
                (
                    ethernet(
                        &[ETH_P_8021Q],
                        ETH_P_IPV4,
                        &ipv4(v4_src, v4_dst, &tcp(1, b"one tag"), false),
                    ),
                    b"one tag",
                ),
                (
                    ethernet(
                        &[ETH_P_8021AD, ETH_P_8021Q],
                        ETH_P_IPV6,
                        &ipv6(v6_src, v6_dst, &[], &tcp(2, b"two tags")),
                    ),
                    b"two tags",
                ),
                (
                    ethernet(
                        &[],
                        ETH_P_IPV6,
                        &ipv6(
                            v6_src,
                            v6_dst,
                            &[IPV6_HOP_BY_HOP, IPV6_DEST_OPTS],
                            &tcp(3, b"two extensions"),
                        ),
                    ),
                    b"two extensions",
                ),
                (
                    ethernet(
                        &[],
                        ETH_P_IPV6,
                        &ipv6(
                            v6_src,
                            v6_dst,
                            &[IPV6_DEST_OPTS; 6],
                            &tcp(4, b"six extensions"),
                        ),
                    ),
                    b"six extensions",
                ),
            ];
            for (frame, _) in &followed {
                sender.send(frame).unwrap();
            }
            let three_tags = ethernet(
                &[ETH_P_8021AD, ETH_P_8021Q, ETH_P_8021Q],
                ETH_P_IPV4,
                &ipv4(v4_src, v4_dst, &tcp(5, b"x"), false),
            );
            let seven_extensions = ethernet(
                &[],
                ETH_P_IPV6,
                &ipv6(v6_src, v6_dst, &[IPV6_DEST_OPTS; 7], &tcp(6, b"x")),
            );
            let fragment = ethernet(&[], ETH_P_IPV4, &ipv4(v4_src, v4_dst, &tcp(7, b"x"), true));
            for frame in [&three_tags, &seven_extensions, &fragment] {
                sender.send(frame).unwrap();
            }

            let records = session.records();
            let payloads: Vec<&[u8]> = records.iter().map(|r| r.data.as_slice()).collect();
            let expected: Vec<&[u8]> = followed.iter().map(|(_, payload)| *payload).collect();
            assert_eq!(payloads, expected);
            assert_eq!(records[1].src, "[fd00:231::1]:40000".parse().unwrap());
            assert_eq!(records[0].seq, 1);
            let counters = session.counters();
            assert_eq!(counters[&Counter::SkippedVlanDepth], 1);
            assert_eq!(counters[&Counter::SkippedIpv6ExtensionChain], 1);
            assert_eq!(counters[&Counter::SkippedIpFragment], 1);
            assert_eq!(counters[&Counter::SkippedMalformed], 0);
        })
        .join()
        .unwrap();
}

#[test]
#[ignore = "needs root"]
fn ipv6_destination_options_header_is_walked() {
    require_privileges();
    in_fresh_netns(|| {
        let mut session = Session::start("lo", &[PORT]);
        let server = SocketAddr::new("::1".parse().unwrap(), PORT);
        let listener = std::net::TcpListener::bind(server).unwrap();
        let request_bytes = pattern(1_500, 11);
        let server_side = serve_once(listener, request_bytes.len(), b"done".to_vec());
        let mut client = client_with_destination_options(server);
        let client_addr = client.local_addr().unwrap();
        std::io::Write::write_all(&mut client, &request_bytes).unwrap();
        let mut answer = Vec::new();
        std::io::Read::read_to_end(&mut client, &mut answer).unwrap();
        assert_eq!(server_side.join().unwrap(), request_bytes);
        let streams = rebuild(&session.records());
        assert_eq!(streams[&(client_addr, server)].contiguous(), request_bytes);
        assert_eq!(streams[&(server, client_addr)].contiguous(), b"done");
        let counters = session.counters();
        assert_eq!(counters[&Counter::SkippedIpv6ExtensionChain], 0);
        assert_eq!(counters[&Counter::SkippedMalformed], 0);
    });
}

/// A TCP client whose every packet carries an IPv6 destination options
/// extension header (eight bytes: a PadN option).
fn client_with_destination_options(server: SocketAddr) -> std::net::TcpStream {
    use std::os::fd::AsRawFd;
    let socket = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None).unwrap();
    // Next header (filled in by the kernel), length 0 (8 bytes), PadN of 4.
    let options: [u8; 8] = [0, 0, 1, 4, 0, 0, 0, 0];
    // SAFETY: a valid socket and a buffer of the given length.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_DSTOPTS,
            options.as_ptr().cast(),
            options.len() as libc::socklen_t,
        )
    };
    assert_eq!(
        result,
        0,
        "IPV6_DSTOPTS: {}",
        std::io::Error::last_os_error()
    );
    socket.connect(&server.into()).unwrap();
    socket.into()
}
