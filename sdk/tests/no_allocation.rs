//! SFrame protection and unprotection allocate nothing per frame: counted by a heap profiler
//! installed as this test binary's allocator, over many frames of both suites.

use vcsdk::media::sframe::{CipherSuite, SframeContext, MAX_HEADER_LEN, TAG_LEN};

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    for suite in [CipherSuite::Aes128GcmSha256, CipherSuite::Aes256GcmSha512] {
        let key = vec![9u8; suite.key_len()];
        let mut sender = SframeContext::new();
        sender.add_send_key(suite, 0x0102, &key).unwrap();
        let mut receiver = SframeContext::new();
        receiver.add_receive_key(suite, 0x0102, &key).unwrap();
        for size in [0usize, 160, 1200, 16 * 1024] {
            let mut buf = vec![7u8; size + MAX_HEADER_LEN + TAG_LEN];
            let mut out = vec![0u8; size + MAX_HEADER_LEN + TAG_LEN];
            let plain = vec![3u8; size];
            let before = dhat::HeapStats::get();
            for _ in 0..1000 {
                let n = sender
                    .encrypt_in_place(0x0102, b"meta", &mut buf, size)
                    .unwrap();
                let (_, range) = receiver.decrypt_in_place(b"meta", &mut buf[..n]).unwrap();
                assert_eq!(range.len(), size);
                let n = sender.encrypt(0x0102, &[], &plain, &mut out).unwrap();
                let (_, len) = receiver.decrypt(&[], &out[..n], &mut buf).unwrap();
                assert_eq!(len, size);
            }
            let after = dhat::HeapStats::get();
            dhat::assert_eq!(after.total_blocks, before.total_blocks);
            println!(
                "suite {:?}, {size}-byte frames: 4000 operations, {} heap allocations",
                suite,
                after.total_blocks - before.total_blocks
            );
        }
    }
    println!("no_allocation: ok");
}
