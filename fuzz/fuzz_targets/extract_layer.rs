//! Arbitrary bytes as a layer, plain and through gunzip, into the
//! extractor: never a panic, and nothing written beside the target
//! directory (absolute names and symlinks are re-rooted inside it).
#![no_main]

use atelet::images::extract::apply_layer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let root = tmp.path().join("root");
    let canary = tmp.path().join("canary");
    std::fs::write(&canary, b"c").expect("the canary");
    for gzip in [false, true] {
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir(&root).expect("the root");
        let _ = if gzip {
            apply_layer(&root, &mut flate2::read::MultiGzDecoder::new(data))
        } else {
            apply_layer(&root, &mut &data[..])
        };
        let mut names: Vec<String> = std::fs::read_dir(tmp.path())
            .expect("readable")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["canary", "root"], "something was written beside the root");
        assert_eq!(std::fs::read(&canary).expect("the canary"), b"c");
    }
});
