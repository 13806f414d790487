//! The institutions and tokens sections.

use super::bytes::{Dec, Enc};
use super::*;

pub(super) fn encode_institutions(insts: &Institutions, e: &mut Enc<'_>) {
    e.count(insts.list.len());
    for inst in &insts.list {
        e.str8(&inst.code);
        e.str8(&inst.name);
        e.put(inst.kind as u8);
        e.put(inst.admdvs);
    }
}

pub(super) fn decode_institutions(d: &mut Dec<'_>) -> Res<Institutions> {
    let count = d.count(1 + 1 + 1 + 1 + 1 + 4, "institution count")?;
    let mut insts = Institutions {
        index: FxHashMap::with_capacity_and_hasher(count, Default::default()),
        list: Chunked::default(),
    };
    for i in 0..count {
        let at = d.pos;
        let code = d.arr::<30>()?;
        if !code_bytes_valid(code.as_bytes()) {
            return fail(at, "fixmedins_code");
        }
        let at_name = d.pos;
        let name = d.str8()?;
        if name.is_empty() || name.len() > NAME_BYTES_MAX {
            return fail(at_name, "institution name");
        }
        let kind = d.tag(&INST_TYPES, "institution type")?;
        let at_admdvs = d.pos;
        let admdvs = d.get()?;
        if !admdvs_valid(admdvs) {
            return fail(at_admdvs, "institution admdvs");
        }
        if insts.index.insert(code, i as u32).is_some() {
            return fail(at, "duplicate fixmedins_code");
        }
        insts.list.push(Institution {
            code,
            name: name.to_owned(),
            kind,
            admdvs,
        });
    }
    Ok(insts)
}

pub(super) fn encode_tokens(tokens: &Tokens, e: &mut Enc<'_>) {
    e.count(tokens.list.len());
    for t in &tokens.list {
        e.spill();
        e.raw(&t.hash);
        e.put(t.role as u8);
        e.put(t.scope);
        e.bool(t.revoked);
    }
}

pub(super) fn decode_tokens(d: &mut Dec<'_>, persons: usize, insts: usize) -> Res<Tokens> {
    let count = d.count(TOKEN_BYTES, "token count")?;
    let mut index = FxHashMap::with_capacity_and_hasher(count, Default::default());
    let list = d.records(count, TOKEN_BYTES, |i, r| {
        let mut hash = [0u8; 32];
        for b in &mut hash {
            *b = r.get();
        }
        let role = r.tag(&ROLES, "role")?;
        let scope = r.get::<u32>();
        let in_scope = match role {
            Role::Admin => scope == 0,
            Role::Institution => (scope as usize) < insts,
            Role::Person => (scope as usize) < persons,
        };
        if !in_scope {
            return Err("token scope");
        }
        if index.insert(hash, i as u32).is_some() {
            return Err("duplicate token hash");
        }
        Ok(Token {
            hash,
            role,
            scope,
            revoked: r.bool()?,
        })
    })?;
    Ok(Tokens {
        index,
        list: list.into(),
        changed_op: 0,
    })
}
