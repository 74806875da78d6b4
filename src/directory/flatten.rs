//! Reading a whole directory into a compact [`DirectorySnapshot`] and the pure
//! flattening of nested groups (with cycle detection). Owns no HTTP: it drives
//! any [`Directory`] through its paged streams and never holds raw pages longer
//! than it takes to turn them into indices.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures_util::{StreamExt, TryStreamExt};

use super::{Directory, DirectoryError};
use crate::identity::{GroupMember, GroupRef, MemberKind, Person};

/// How group-in-group membership is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nesting {
    /// Only direct `USER` members count.
    Direct,
    /// Members of nested groups count as members of every ancestor group.
    Flatten,
}

/// Everyone, every group and who is in which group, as read in one pass.
/// Memberships are indices into `people`, aligned with `groups`, so a
/// 1,000,000-membership directory costs a few megabytes, not hundreds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectorySnapshot {
    /// Every person in scope, in the order the source listed them.
    pub people: Vec<Person>,
    /// Every group, in the order the source listed them.
    pub groups: Vec<GroupRef>,
    /// `memberships[g]` = sorted, deduplicated indices into `people` of the
    /// (flattened, if configured) members of `groups[g]`.
    pub memberships: Vec<Vec<u32>>,
    /// Emails of groups that are part of a nesting cycle (Google forbids them,
    /// but a snapshot taken mid-change can show one); flattening still terminates.
    pub cyclic_groups: BTreeSet<String>,
    /// Member rows naming nobody in `people`/`groups` (out-of-scope or external).
    pub unknown_members: u64,
}

impl DirectorySnapshot {
    /// The members of `groups[group]` as people.
    pub fn members_of(&self, group: usize) -> impl Iterator<Item = &Person> + '_ {
        self.memberships
            .get(group)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.people.get(i as usize))
    }

    /// Total membership rows after flattening.
    pub fn membership_count(&self) -> usize {
        self.memberships.iter().map(Vec::len).sum()
    }
}

/// A direct member, resolved to an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edge {
    Person(u32),
    Group(u32),
    Everyone,
}

/// Reads people, groups and every group's members from `dir` (members of up to
/// `concurrency` groups at once) and flattens nesting as `dir` is configured.
pub async fn snapshot(
    dir: &dyn Directory,
    concurrency: usize,
) -> Result<DirectorySnapshot, DirectoryError> {
    let mut people = Vec::new();
    let mut pages = dir.people();
    while let Some(page) = pages.try_next().await? {
        people.extend(page);
    }
    drop(pages);
    let mut groups = Vec::new();
    let mut pages = dir.groups();
    while let Some(page) = pages.try_next().await? {
        groups.extend(page);
    }
    drop(pages);

    let index = Index::new(&people, &groups);
    let index = &index;
    let mut direct: Vec<Vec<Edge>> = vec![Vec::new(); groups.len()];
    let mut unknown = 0u64;
    let mut fetches = futures_util::stream::iter(groups.iter().enumerate())
        .map(|(g, group)| async move {
            let mut edges = Vec::new();
            let mut unknown = 0u64;
            let mut pages = dir.members(&group.id);
            while let Some(page) = pages.try_next().await? {
                for m in &page {
                    match index.edge(m) {
                        Some(e) => edges.push(e),
                        None => unknown += 1,
                    }
                }
            }
            Ok::<_, DirectoryError>((g, edges, unknown))
        })
        .buffer_unordered(concurrency.max(1));
    while let Some((g, edges, u)) = fetches.try_next().await? {
        direct[g] = edges;
        unknown += u;
    }
    drop(fetches);

    let nesting = if dir.nested_groups() {
        Nesting::Flatten
    } else {
        Nesting::Direct
    };
    let (memberships, cyclic) = flatten(&direct, people.len(), nesting);
    let cyclic_groups = cyclic
        .into_iter()
        .filter_map(|g| groups.get(g as usize).map(|x| x.email.clone()))
        .collect();
    Ok(DirectorySnapshot {
        people,
        groups,
        memberships,
        cyclic_groups,
        unknown_members: unknown,
    })
}

/// Pure flattening over plain maps (group id -> direct members): who is in each
/// group, as sorted person ids, plus the ids of groups caught in a cycle.
pub fn flatten_memberships(
    people: &[Person],
    groups: &[GroupRef],
    direct: &BTreeMap<String, Vec<GroupMember>>,
    nesting: Nesting,
) -> (BTreeMap<String, BTreeSet<String>>, BTreeSet<String>) {
    let index = Index::new(people, groups);
    let edges: Vec<Vec<Edge>> = groups
        .iter()
        .map(|g| {
            direct
                .get(&g.id)
                .into_iter()
                .flatten()
                .filter_map(|m| index.edge(m))
                .collect()
        })
        .collect();
    let (flat, cyclic) = flatten(&edges, people.len(), nesting);
    let mut out = BTreeMap::new();
    for (g, members) in groups.iter().zip(flat) {
        let ids = members
            .into_iter()
            .filter_map(|i| people.get(i as usize).map(|p| p.id.clone()))
            .collect();
        out.insert(g.id.clone(), ids);
    }
    let cyclic = cyclic
        .into_iter()
        .filter_map(|g| groups.get(g as usize).map(|x| x.id.clone()))
        .collect();
    (out, cyclic)
}

/// Lookup from member rows to indices (by immutable id first, then by email).
struct Index {
    people_by_id: HashMap<String, u32>,
    people_by_email: HashMap<String, u32>,
    groups_by_id: HashMap<String, u32>,
    groups_by_email: HashMap<String, u32>,
}

impl Index {
    fn new(people: &[Person], groups: &[GroupRef]) -> Self {
        let mut ix = Index {
            people_by_id: HashMap::with_capacity(people.len()),
            people_by_email: HashMap::with_capacity(people.len()),
            groups_by_id: HashMap::with_capacity(groups.len()),
            groups_by_email: HashMap::with_capacity(groups.len()),
        };
        for (i, p) in (0u32..).zip(people) {
            ix.people_by_id.insert(p.id.clone(), i);
            ix.people_by_email.insert(p.primary_email.clone(), i);
        }
        for (i, g) in (0u32..).zip(groups) {
            ix.groups_by_id.insert(g.id.clone(), i);
            ix.groups_by_email.insert(g.email.clone(), i);
        }
        ix
    }

    fn edge(&self, m: &GroupMember) -> Option<Edge> {
        let email = m.email.as_deref().map(str::to_ascii_lowercase);
        let find = |by_id: &HashMap<String, u32>, by_email: &HashMap<String, u32>| {
            by_id
                .get(&m.id)
                .or_else(|| email.as_ref().and_then(|e| by_email.get(e)))
                .copied()
        };
        match m.kind {
            MemberKind::User => find(&self.people_by_id, &self.people_by_email).map(Edge::Person),
            MemberKind::Group => find(&self.groups_by_id, &self.groups_by_email).map(Edge::Group),
            MemberKind::Customer => Some(Edge::Everyone),
            MemberKind::External => None,
        }
    }
}

/// Breadth-first walk from each group through its nested groups. A `seen`
/// stamp per group makes every walk finite even when the graph has a cycle;
/// reaching the start group again marks it cyclic.
fn flatten(direct: &[Vec<Edge>], people: usize, nesting: Nesting) -> (Vec<Vec<u32>>, Vec<u32>) {
    let mut out = Vec::with_capacity(direct.len());
    let mut cyclic = Vec::new();
    let mut seen = vec![u32::MAX; direct.len()];
    let mut queue = Vec::new();
    for (start, _) in direct.iter().enumerate() {
        let stamp = start as u32;
        let mut members = Vec::new();
        let mut everyone = false;
        let mut in_cycle = false;
        queue.clear();
        queue.push(start);
        seen[start] = stamp;
        while let Some(g) = queue.pop() {
            for edge in direct.get(g).into_iter().flatten() {
                match *edge {
                    Edge::Person(p) => members.push(p),
                    Edge::Everyone => everyone = true,
                    Edge::Group(child) if nesting == Nesting::Flatten => {
                        let child = child as usize;
                        if child == start {
                            in_cycle = true;
                        }
                        if child < seen.len() && seen[child] != stamp {
                            seen[child] = stamp;
                            queue.push(child);
                        }
                    }
                    Edge::Group(_) => {}
                }
            }
        }
        if everyone {
            members = (0..people as u32).collect();
        } else {
            members.sort_unstable();
            members.dedup();
        }
        if in_cycle {
            cyclic.push(stamp);
        }
        out.push(members);
    }
    (out, cyclic)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(id: &str) -> Person {
        Person {
            id: id.into(),
            primary_email: format!("{id}@example.com"),
            aliases: vec![],
            given_name: id.into(),
            family_name: "X".into(),
            full_name: String::new(),
            suspended: false,
            archived: false,
            org_unit_path: "/".into(),
            is_admin: false,
        }
    }

    fn group(id: &str) -> GroupRef {
        GroupRef {
            id: id.into(),
            email: format!("{id}@example.com"),
            name: id.into(),
        }
    }

    fn member(id: &str, kind: MemberKind) -> GroupMember {
        GroupMember {
            id: id.into(),
            email: Some(format!("{id}@example.com")),
            kind,
            role: "MEMBER".into(),
            status: "ACTIVE".into(),
        }
    }

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flattens_nested_groups_and_survives_a_cycle() {
        let people: Vec<_> = ["a", "b", "c", "d"].map(person).into();
        let groups: Vec<_> = ["g1", "g2", "g3", "g4"].map(group).into();
        let mut direct = BTreeMap::new();
        // g1 -> g2 -> g3 -> g1 (cycle); g4 -> g3.
        direct.insert(
            "g1".into(),
            vec![
                member("a", MemberKind::User),
                member("g2", MemberKind::Group),
            ],
        );
        direct.insert(
            "g2".into(),
            vec![
                member("b", MemberKind::User),
                member("g3", MemberKind::Group),
            ],
        );
        direct.insert(
            "g3".into(),
            vec![
                member("c", MemberKind::User),
                member("g1", MemberKind::Group),
            ],
        );
        direct.insert(
            "g4".into(),
            vec![
                member("d", MemberKind::User),
                member("g3", MemberKind::Group),
            ],
        );
        let (flat, cyclic) = flatten_memberships(&people, &groups, &direct, Nesting::Flatten);
        assert_eq!(flat["g1"], set(&["a", "b", "c"]));
        assert_eq!(flat["g2"], set(&["a", "b", "c"]));
        assert_eq!(flat["g3"], set(&["a", "b", "c"]));
        assert_eq!(flat["g4"], set(&["a", "b", "c", "d"]));
        assert_eq!(cyclic, set(&["g1", "g2", "g3"]));

        let (flat, cyclic) = flatten_memberships(&people, &groups, &direct, Nesting::Direct);
        assert_eq!(flat["g1"], set(&["a"]));
        assert_eq!(flat["g4"], set(&["d"]));
        assert!(cyclic.is_empty());
    }

    #[test]
    fn customer_member_means_everyone_and_unknowns_are_dropped() {
        let people: Vec<_> = ["a", "b"].map(person).into();
        let groups: Vec<_> = ["all", "g"].map(group).into();
        let mut direct = BTreeMap::new();
        direct.insert(
            "all".into(),
            vec![GroupMember {
                id: "C123".into(),
                email: None,
                kind: MemberKind::Customer,
                role: "MEMBER".into(),
                status: String::new(),
            }],
        );
        direct.insert(
            "g".into(),
            vec![
                member("ghost", MemberKind::User),
                member("ext", MemberKind::External),
                member("b", MemberKind::User),
                member("b", MemberKind::User),
            ],
        );
        let (flat, _) = flatten_memberships(&people, &groups, &direct, Nesting::Flatten);
        assert_eq!(flat["all"], set(&["a", "b"]));
        assert_eq!(flat["g"], set(&["b"]));
    }

    /// Reference semantics: membership is the least fixed point of
    /// `members(g) = direct users(g) U members(child)` for every nested child.
    fn fixed_point(users: &[Vec<u32>], children: &[Vec<u32>]) -> Vec<BTreeSet<u32>> {
        let mut m: Vec<BTreeSet<u32>> = users.iter().map(|u| u.iter().copied().collect()).collect();
        loop {
            let mut changed = false;
            for g in 0..m.len() {
                for &c in &children[g] {
                    let add: Vec<u32> = m[c as usize].difference(&m[g]).copied().collect();
                    changed |= !add.is_empty();
                    m[g].extend(add);
                }
            }
            if !changed {
                return m;
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn flattening_equals_the_fixed_point_on_random_graphs(
            users in proptest::collection::vec(proptest::collection::vec(0u32..12, 0..5), 1..10),
            links in proptest::collection::vec((0usize..10, 0usize..10), 0..20),
        ) {
            let n = users.len();
            let mut children = vec![Vec::new(); n];
            for (a, b) in links {
                children[a % n].push((b % n) as u32);
            }
            let direct: Vec<Vec<Edge>> = (0..n)
                .map(|g| {
                    users[g].iter().map(|&p| Edge::Person(p))
                        .chain(children[g].iter().map(|&c| Edge::Group(c)))
                        .collect()
                })
                .collect();
            let (flat, cyclic) = flatten(&direct, 12, Nesting::Flatten);
            let want = fixed_point(&users, &children);
            for g in 0..n {
                let got: BTreeSet<u32> = flat[g].iter().copied().collect();
                proptest::prop_assert_eq!(&got, &want[g]);
                proptest::prop_assert_eq!(got.len(), flat[g].len(), "no duplicates");
            }
            // A group is cyclic iff it can reach itself.
            for g in 0..n {
                let mut seen = BTreeSet::new();
                let mut stack: Vec<u32> = children[g].clone();
                while let Some(c) = stack.pop() {
                    if seen.insert(c) {
                        stack.extend(&children[c as usize]);
                    }
                }
                proptest::prop_assert_eq!(cyclic.contains(&(g as u32)), seen.contains(&(g as u32)));
            }
        }
    }

    #[test]
    fn matches_members_by_email_when_the_id_differs() {
        let people = vec![person("a")];
        let groups = vec![group("g")];
        let mut direct = BTreeMap::new();
        let mut m = member("other-id", MemberKind::User);
        m.email = Some("A@Example.com".into());
        direct.insert("g".into(), vec![m]);
        let (flat, _) = flatten_memberships(&people, &groups, &direct, Nesting::Flatten);
        assert_eq!(flat["g"], set(&["a"]));
    }
}
