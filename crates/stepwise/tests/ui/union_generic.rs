use stepwise::EventUnion;

#[derive(EventUnion)]
enum Either<T> {
    One(T),
}

fn main() {}
