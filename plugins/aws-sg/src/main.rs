//! `rangekeeper-provider-aws-sg`: the plugin executable. Put it on `PATH` and use
//! `provider: aws-sg` on a target; rangekeeper speaks the exec protocol with it.

fn main() -> std::process::ExitCode {
    rangekeeper_provider::serve(
        rangekeeper_provider_aws_sg::capabilities,
        rangekeeper_provider_aws_sg::factory,
    )
}
