mod pg_support;

use custos::state::engine::{Engine, Scan};
use custos::state::Tree;

#[test]
fn smoke() {
    let e = pg_support::fresh_engine();
    e.transact_raw(&mut |tx| {
        assert_eq!(tx.get(Tree::Meta, b"x")?, None);
        tx.insert(Tree::Meta, b"x", b"1".to_vec())?;
        tx.insert(Tree::Audit, &1u64.to_be_bytes(), b"a".to_vec())?;
        assert_eq!(tx.get(Tree::Meta, b"x")?, Some(b"1".to_vec()));
        Ok(())
    })
    .unwrap();
    assert_eq!(e.get_raw(Tree::Meta, b"x").unwrap(), Some(b"1".to_vec()));
    assert_eq!(e.scan_raw(&Scan::all(Tree::Audit, 10)).unwrap().len(), 1);
    println!("{:?}", e.stats());
}
