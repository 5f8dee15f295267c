//! A flow declared in a module that imports nothing and has no prelude, used
//! from another module: the generated code names everything by absolute path.

mod nodes {
    #[derive(Default)]
    pub struct State {
        pub visited: ::std::vec::Vec<&'static str>,
    }

    #[derive(Default)]
    pub struct Visit;

    #[::minllm::node]
    impl Visit {
        fn exec(&self) {}
        fn post(&self, s: &mut State) {
            s.visited.push("visit");
        }
    }

    #[derive(Clone, Copy, ::minllm::Action)]
    pub enum Route {
        Again,
        Done,
    }

    #[derive(Default)]
    pub struct Router;

    #[::minllm::node]
    impl Router {
        fn prep(&self, s: &State) -> usize {
            s.visited.len()
        }
        fn exec(&self, n: &usize) -> Route {
            if *n < 2 { Route::Again } else { Route::Done }
        }
        fn post(&self, _: &mut State, r: Route) -> Route {
            r
        }
    }
}

mod flows {
    #![no_implicit_prelude]

    ::minllm::flow! {
        pub struct Tour: super::nodes::State {
            node router: super::nodes::Router;
            node visit: super::nodes::Visit;
            start router;
            max_steps 10;
            router - super::nodes::Route::Again >> visit >> router;
            router - super::nodes::Route::Done >> end;
        }
    }
}

fn main() {
    let mut state = nodes::State::default();
    flows::Tour::new().run(&mut state).unwrap();
    assert_eq!(state.visited, ["visit", "visit"]);
    // A typed flow is also a step of a runtime-built flow.
    let mut runtime = minllm::Flow::new("outer");
    runtime.add("tour", flows::Tour::new());
    let mut state = nodes::State::default();
    runtime.run(&mut state).unwrap();
    assert_eq!(state.visited.len(), 2);
}
