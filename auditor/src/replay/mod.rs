//! Capture files (pcap, pcapng) read into the same segments as live capture.
