//! enode:// URL parsing; a parsed URL prints to one that parses equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p::node::Enode;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(enode) = s.parse::<Enode>() {
        let again: Enode = enode.to_string().parse().expect("printed enode parses");
        assert_eq!(enode, again);
    }
});
