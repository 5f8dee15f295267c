//! An async flow with async and sync nodes, on tokio.
use minllm::{flow, node};

#[derive(Default)]
struct State {
    urls: Vec<String>,
    sizes: Vec<usize>,
    total: usize,
}

#[derive(Default)]
struct Fetch;

#[node(concurrent, limit = 8)]
impl Fetch {
    async fn prep(&self, s: &State) -> Vec<String> {
        s.urls.clone()
    }
    async fn exec(&self, url: &String) -> usize {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        url.len()
    }
    async fn post(&self, s: &mut State, _: Vec<String>, sizes: Vec<usize>) {
        s.sizes = sizes;
    }
}

#[derive(Default)]
struct Sum;

#[node]
impl Sum {
    fn prep(&self, s: &State) -> Vec<usize> {
        s.sizes.clone()
    }
    fn exec(&self, sizes: &[usize]) -> usize {
        sizes.iter().sum()
    }
    fn post(&self, s: &mut State, total: usize) {
        s.total = total;
    }
}

flow! {
    pub async struct Crawl: State {
        node fetch: Fetch;
        node sum: Sum;
        start fetch;
        fetch >> sum;
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut state = State { urls: vec!["a".into(), "bb".into(), "ccc".into()], ..State::default() };
        Crawl::new().run(&mut state).await.unwrap();
        assert_eq!(state.sizes, [1, 2, 3]);
        assert_eq!(state.total, 6);
        // The flow's future can be spawned.
        let handle = tokio::spawn(async move {
            let mut state = State { urls: vec!["x".into()], ..State::default() };
            Crawl::new().run(&mut state).await.map(|_| state.total)
        });
        assert_eq!(handle.await.unwrap().unwrap(), 1);
    });
}
