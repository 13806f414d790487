//! The bindings section and the list checks that tie it to the persons.

use super::bytes::{Dec, Enc, Rec};
use super::*;

pub(super) fn encode_bindings(bindings: &Chunked<Binding>, e: &mut Enc<'_>) {
    e.count(bindings.len());
    for b in bindings {
        e.put(b.giver);
        e.put(b.receiver);
        e.put(b.relation as u8);
        e.put(b.scope as u8);
        e.bool(b.active);
        e.put(b.next_given);
        e.put(b.next_received);
    }
}

pub(super) fn decode_bindings(
    d: &mut Dec<'_>,
    persons: &Persons,
    heads: &HeadsAt,
) -> Res<Vec<Binding>> {
    let n = persons.len();
    let count = d.count(BINDING_BYTES, "binding count")?;
    let bindings = d.records(count, BINDING_BYTES, |i, r| {
        let giver = r.index(n, "binding giver")?;
        let receiver = r.index(n, "binding receiver")?;
        let relation = r.tag(&RELATIONS, "relation")?;
        let scope = r.tag(&SCOPES, "scope")?;
        let active = r.bool()?;
        let id = i as u32 + 1;
        let link = |r: &mut Rec<'_>| {
            let next = r.get::<u32>();
            let ok = if active {
                next == 0 || (next > id && next as usize <= count)
            } else {
                next == 0
            };
            if ok {
                Ok(next)
            } else {
                Err("binding link")
            }
        };
        Ok(Binding {
            giver,
            receiver,
            relation,
            scope,
            active,
            next_given: link(r)?,
            next_received: link(r)?,
        })
    })?;
    check_binding_lists(persons, &bindings, heads)?;
    Ok(bindings)
}

fn check_binding_lists(persons: &Persons, bindings: &[Binding], at: &HeadsAt) -> Res<()> {
    let count = bindings.len();
    let (mut given, mut received) = (0usize, 0usize);
    for p in 0..persons.len() {
        let mut b = persons.given_head[p];
        if b as usize > count {
            return fail(at.given + p * 4, "given list head");
        }
        while b != 0 {
            let binding = &bindings[b as usize - 1];
            if binding.giver as usize != p || !binding.active {
                return fail(at.given + p * 4, "given list");
            }
            given += 1;
            b = binding.next_given;
        }
        let mut b = persons.hot[p].received_head;
        if b as usize > count {
            return fail(at.received + p * 4, "received list head");
        }
        while b != 0 {
            let binding = &bindings[b as usize - 1];
            if binding.receiver as usize != p || !binding.active {
                return fail(at.received + p * 4, "received list");
            }
            received += 1;
            b = binding.next_received;
        }
    }
    let active = bindings.iter().filter(|b| b.active).count();
    if given != active || received != active {
        return fail(at.given, "active bindings not all linked");
    }
    Ok(())
}
