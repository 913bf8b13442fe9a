//! A compressed byte trie (radix tree) that answers "which stored keys are
//! prefixes of this input, longest first" without allocating.

/// Keys are byte strings; each key owns one value.
#[derive(Debug)]
pub(crate) struct PrefixTrie<V> {
    nodes: Vec<TrieNode>,
    values: Vec<V>,
}

#[derive(Debug, Default)]
struct TrieNode {
    /// The bytes on the edge from the parent to this node (empty for the root).
    label: Box<[u8]>,
    /// `(first byte of the child's label, child)`, sorted by byte.
    children: Vec<(u8, u32)>,
    /// Index into `values` when a key ends here.
    value: Option<u32>,
    /// The nearest strict ancestor that holds a value; set by `seal`.
    valued_ancestor: Option<u32>,
}

impl<V> Default for PrefixTrie<V> {
    fn default() -> Self {
        PrefixTrie {
            nodes: vec![TrieNode::default()],
            values: Vec::new(),
        }
    }
}

impl<V> PrefixTrie<V> {
    /// The value stored under `key`, created with `make` if absent.
    /// Call [`PrefixTrie::seal`] after the last insertion.
    pub(crate) fn entry(
        &mut self,
        key: impl IntoIterator<Item = u8>,
        make: impl FnOnce() -> V,
    ) -> &mut V {
        let key: Vec<u8> = key.into_iter().collect();
        let mut rest = key.as_slice();
        let mut node = 0usize;
        while let Some(&first) = rest.first() {
            match self.nodes[node]
                .children
                .binary_search_by_key(&first, |&(b, _)| b)
            {
                Err(free_slot) => {
                    node = self.add_child(node, free_slot, rest);
                    rest = &[];
                }
                Ok(slot) => {
                    let child = self.nodes[node].children[slot].1 as usize;
                    let common = common_prefix_len(&self.nodes[child].label, rest);
                    if common < self.nodes[child].label.len() {
                        self.split(node, slot, common);
                    }
                    node = self.nodes[node].children[slot].1 as usize;
                    rest = &rest[common..];
                }
            }
        }
        let index = match self.nodes[node].value {
            Some(index) => index as usize,
            None => {
                self.values.push(make());
                let index = self.values.len() - 1;
                self.nodes[node].value = Some(index as u32);
                index
            }
        };
        &mut self.values[index]
    }

    /// Adds a leaf under `parent` at child position `slot` with the edge
    /// `label` (not empty); returns the leaf.
    fn add_child(&mut self, parent: usize, slot: usize, label: &[u8]) -> usize {
        let child = self.nodes.len() as u32;
        self.nodes.push(TrieNode {
            label: label.into(),
            ..TrieNode::default()
        });
        self.nodes[parent].children.insert(slot, (label[0], child));
        child as usize
    }

    /// Cuts the edge to `parent`'s child at `slot` after `at` bytes, putting a
    /// new inner node there.
    fn split(&mut self, parent: usize, slot: usize, at: usize) {
        let child = self.nodes[parent].children[slot].1 as usize;
        let label = std::mem::take(&mut self.nodes[child].label);
        let middle = self.nodes.len() as u32;
        self.nodes.push(TrieNode {
            label: label[..at].into(),
            children: vec![(label[at], child as u32)],
            ..TrieNode::default()
        });
        self.nodes[child].label = label[at..].into();
        self.nodes[parent].children[slot].1 = middle;
    }

    /// Links every node to its nearest valued ancestor; needed before lookups.
    pub(crate) fn seal(&mut self) {
        let mut pending = vec![(0usize, None)];
        while let Some((node, inherited)) = pending.pop() {
            self.nodes[node].valued_ancestor = inherited;
            let link = match self.nodes[node].value {
                Some(_) => Some(node as u32),
                None => inherited,
            };
            pending.extend(
                self.nodes[node]
                    .children
                    .iter()
                    .map(|&(_, child)| (child as usize, link)),
            );
        }
    }

    /// Every value whose key is a prefix of `input`, longest key first.
    pub(crate) fn prefixes_of(
        &self,
        input: impl IntoIterator<Item = u8>,
    ) -> impl Iterator<Item = &V> {
        let mut input = input.into_iter();
        let mut node = 0usize;
        let mut deepest = self.nodes[0].value.map(|_| 0u32);
        'walk: while let Some(first) = input.next() {
            let children = &self.nodes[node].children;
            let Ok(slot) = children.binary_search_by_key(&first, |&(b, _)| b) else {
                break;
            };
            let child = children[slot].1 as usize;
            for &expected in &self.nodes[child].label[1..] {
                if input.next() != Some(expected) {
                    break 'walk;
                }
            }
            node = child;
            if self.nodes[node].value.is_some() {
                deepest = Some(node as u32);
            }
        }
        std::iter::successors(deepest, |&n| self.nodes[n as usize].valued_ancestor).filter_map(
            |n| {
                let index = self.nodes[n as usize].value?;
                self.values.get(index as usize)
            },
        )
    }

    /// All stored values, in insertion order.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.values.iter_mut()
    }
}

fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_come_longest_first() {
        let mut trie = PrefixTrie::default();
        for key in ["/", "/a", "/a/b/", "/x"] {
            *trie.entry(key.bytes(), || key) = key;
        }
        trie.seal();
        let found: Vec<_> = trie.prefixes_of("/a/b/c".bytes()).copied().collect();
        assert_eq!(found, vec!["/a/b/", "/a", "/"]);
        let found: Vec<_> = trie.prefixes_of("/q".bytes()).copied().collect();
        assert_eq!(found, vec!["/"]);
    }

    #[test]
    fn split_edges_keep_every_key() {
        let mut trie = PrefixTrie::default();
        // Inserted longest first so that later keys split existing edges.
        for key in ["/abcdef", "/abcxyz", "/abc", "/ab", "/b"] {
            *trie.entry(key.bytes(), || key) = key;
        }
        trie.seal();
        let found: Vec<_> = trie.prefixes_of("/abcdefg".bytes()).copied().collect();
        assert_eq!(found, vec!["/abcdef", "/abc", "/ab"]);
        let found: Vec<_> = trie.prefixes_of("/abcx".bytes()).copied().collect();
        assert_eq!(found, vec!["/abc", "/ab"]);
        let found: Vec<_> = trie.prefixes_of("/a".bytes()).copied().collect();
        assert!(found.is_empty());
        assert_eq!(
            *trie.entry("/abc".bytes(), || "dup"),
            "/abc",
            "existing key keeps its value"
        );
    }
}
